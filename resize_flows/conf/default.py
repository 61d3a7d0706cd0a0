"""[DEFAULT] options: where the embedded case keeps its state, and the
plugins of every flow."""
import os

from oslo_config import cfg


def _default_state_dir():
    if os.geteuid() == 0:
        # Local hosts' daemons then run as an unprivileged user, who must
        # reach this directory: /root is closed to it, /var/lib is not.
        return '/var/lib/resize-flows'
    base = os.environ.get('XDG_DATA_HOME') or os.path.join(
        os.path.expanduser('~'), '.local', 'share')
    return os.path.join(base, 'resize-flows')


opts = [
    cfg.StrOpt(
        'state_dir',
        default=_default_state_dir(),
        sample_default='/var/lib/resize-flows',
        help='Directory holding the embedded state: the SQLite database '
             '(unless [database]/connection says otherwise) and, under '
             '"hosts/", the local hosts (their libvirt daemons and instance '
             'directories). Default: /var/lib/resize-flows as root, else '
             '$XDG_DATA_HOME/resize-flows (~/.local/share/resize-flows). '
             'As root it must be reachable by [libvirt]/session_user.'),
    cfg.ListOpt(
        'plugins',
        default=[],
        help='The plugins whose tasks run inside every resize, migrate, '
             'confirm and revert flow, in this order: names of entry '
             'points of the "resize_flows.plugins" group (this package '
             'ships "ports" and "volumes"). A flow records the plugins it '
             'was built with and is resumed with the same ones, whatever '
             'this option says then; one whose plugin is no longer '
             'installed is refused.'),
]


def register_opts(conf):
    conf.register_opts(opts)


def list_opts():
    return {'DEFAULT': opts}
