"""[flows] options: running, resuming and rolling back flows."""
from oslo_config import cfg

group = cfg.OptGroup('flows', title='Flows and the flow log')

opts = [
    cfg.IntOpt(
        'lease_seconds',
        default=30,
        min=2,
        help='How long the lease of a running flow lasts. Its process '
             'renews it every third of this; a flow whose lease expired '
             'counts as interrupted and may be resumed or rolled back by '
             'another process.'),
    cfg.BoolOpt(
        'resume_interrupted',
        default=False,
        help='Resume interrupted flows (lease expired, not finished) when '
             'a resize-flows command that runs flows starts. Off: an '
             'operator decides with "flow resume" or "flow rollback".'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
