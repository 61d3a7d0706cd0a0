"""[image_cache] options: the cached bases of each host's ``_base/``."""
from oslo_config import cfg

group = cfg.OptGroup('image_cache', title='The image cache of each host')

opts = [
    cfg.IntOpt(
        'remove_unused_minimum_age_seconds',
        default=3600,
        min=0,
        help='Seconds since a cached base (or the temporary file of a '
             'fetch) last changed before "image cache clean" may remove '
             'it when no instance directory uses it: a server being '
             'created may be about to use a base it has just fetched or '
             'found (finding one touches it). As Nova\'s option of the '
             'same name.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
