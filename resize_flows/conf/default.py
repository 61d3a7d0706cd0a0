"""[DEFAULT] options: where the embedded case keeps its state."""
import os

from oslo_config import cfg


def _default_state_dir():
    base = os.environ.get('XDG_DATA_HOME') or os.path.join(
        os.path.expanduser('~'), '.local', 'share')
    return os.path.join(base, 'resize-flows')


opts = [
    cfg.StrOpt(
        'state_dir',
        default=_default_state_dir(),
        sample_default='$HOME/.local/share/resize-flows',
        help='Directory holding the embedded state: the SQLite database '
             '(unless [database]/connection says otherwise) and, under '
             '"hosts/", the simulated hosts this process manages (their '
             'libvirt daemons and instance directories).'),
]


def register_opts(conf):
    conf.register_opts(opts)


def list_opts():
    return {'DEFAULT': opts}
