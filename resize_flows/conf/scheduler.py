"""[scheduler] options: choosing destinations, as Nova's of the same name."""
from oslo_config import cfg

group = cfg.OptGroup('scheduler', title='Choosing a destination host')

opts = [
    cfg.IntOpt(
        'max_attempts',
        default=3,
        min=1,
        help='How many hosts a resize or cold migration tries: the '
             'scheduler\'s first choice and up to max_attempts - 1 '
             'alternates, each tried when claiming or preparing the one '
             'before failed. A target host named by the request is tried '
             'alone.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
