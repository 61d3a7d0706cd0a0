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
    cfg.IntOpt(
        'fetch_lock_timeout',
        default=600,
        min=0,
        help='Seconds a fetch of an image base waits for the lock of that '
             'base on the host (_base/.<base>.lock), held by another '
             'fetch of the same base. The fetch that holds it copies '
             'under a fixed temporary name, so that a fetch cut off by '
             'a crash is resumed by the next one; one that waited then '
             'finds the base made (nothing copied). When the lock is '
             'still held after this long, or sooner when its holder has '
             'not touched the lock file for [flows]/copy_stall_timeout '
             'seconds (its copy and hash touch it as they move: a holder '
             'that does not is stalled), the fetch copies under a '
             'temporary name of its own instead: correct, but not '
             'resumable, and the stuck one\'s copy is not reused. A lock '
             'is released when the process holding it ends, even by a '
             'crash. 0: never wait.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
