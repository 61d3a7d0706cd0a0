"""[volumes] options: the file-backed volumes of the ``volumes`` plugin."""
from oslo_config import cfg

group = cfg.OptGroup('volumes', title='The volumes plugin')

opts = [
    cfg.StrOpt(
        'volume_dir',
        default='$state_dir/volumes',
        help='The directory of the volumes plugin\'s volume files '
             '(volume-<id>, qcow2 or raw). Every host must reach it at '
             'this same path, since a guest opens its volume there '
             'whichever host it runs on and a move never copies it: local '
             'hosts share this machine\'s directory; for hosts over ssh it '
             'must be shared storage (NFS...) mounted at the same path on '
             'every one of them. It belongs to the user the guests run as '
             '(as root: [libvirt]/session_user), who may write anything in '
             'it, so nothing there is trusted that resize-flows did not '
             'create.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
