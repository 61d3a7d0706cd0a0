"""[remote] options: how files of hosts on other machines are reached.

A host registered with an ssh address (``host create --ssh``) keeps its
instances path on that machine. Every file operation on it (qemu-img,
directories, ``libvirt.xml``) runs there over ssh, and a disk moved
between two machines is copied by rsync over ssh, pushed by the source.
"""
from oslo_config import cfg

group = cfg.OptGroup('remote', title='hosts on other machines')

opts = [
    cfg.StrOpt(
        'ssh_path',
        default='ssh',
        help='ssh client run to reach a host\'s machine.'),
    cfg.StrOpt(
        'rsync_path',
        default='rsync',
        help='rsync run to copy a disk between machines (here and on the '
             'source machine, which pushes to the destination).'),
    cfg.ListOpt(
        'rsync_options',
        default=[],
        help='More rsync options for disk copies between machines, e.g. '
             '--bwlimit=100M to leave bandwidth to the guests or '
             '--compress.'),
    cfg.StrOpt(
        'ssh_identity_file',
        help='Private key given to ssh with -i. It must be at the same '
             'path on every machine that pushes a disk to another. Unset: '
             'ssh\'s own defaults.'),
    cfg.StrOpt(
        'ssh_config_file',
        help='ssh_config(5) file given to ssh with -F, here and on the '
             'source machines. Unset: ssh\'s own defaults.'),
    cfg.ListOpt(
        'ssh_options',
        default=[],
        help='More ssh options, each KEY=VALUE given with -o, e.g. '
             'StrictHostKeyChecking=accept-new,'
             'UserKnownHostsFile=/etc/resize-flows/known_hosts.'),
    cfg.IntOpt(
        'ssh_connect_timeout',
        default=10,
        min=1,
        help='Seconds ssh waits for a machine to answer (ConnectTimeout), '
             'and between keep-alives once connected (ServerAliveInterval, '
             'three unanswered ones end the connection); a machine that '
             'does not answer makes the step fail with '
             'HypervisorUnavailable.'),
    cfg.IntOpt(
        'ssh_control_persist',
        default=60,
        min=0,
        help='Seconds an idle shared ssh connection to a machine is kept '
             'for the next command (ControlMaster/ControlPersist). '
             '0 opens one connection per command.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
