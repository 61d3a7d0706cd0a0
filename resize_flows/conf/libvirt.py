"""[libvirt] options: the hypervisor behind each host."""
from oslo_config import cfg

group = cfg.OptGroup('libvirt', title='libvirt hosts')

opts = [
    cfg.StrOpt(
        'local_hypervisor',
        default='qemu',
        choices=[
            ('qemu', 'real QEMU guests: one libvirt session daemon per host, '
                     'started under $state_dir/hosts/<name>'),
            ('test', 'libvirt\'s test driver, test:///<node.xml>: one '
                     'private in-process hypervisor per host, gone when the '
                     'process exits (for tests)'),
        ],
        help='Hypervisor of a host created without --uri.'),
    cfg.StrOpt(
        'domain_type',
        default='qemu',
        choices=['qemu', 'kvm'],
        help='Domain type of QEMU guests: qemu (TCG, works everywhere) or '
             'kvm (needs /dev/kvm usable by the daemon\'s user).'),
    cfg.StrOpt(
        'session_user',
        default='resize-flows',
        help='Unprivileged Unix user that runs the libvirt daemons of '
             'local QEMU hosts when resize-flows runs as root (libvirt '
             'runs a per-user session daemon only for a non-root user). '
             'Created on first use. Ignored when not root: the daemons '
             'run as the calling user.'),
    cfg.StrOpt(
        'libvirtd_path',
        default='/usr/sbin/libvirtd',
        help='libvirt daemon started for each local QEMU host.'),
    cfg.IntOpt(
        'daemon_start_timeout',
        default=30,
        min=1,
        help='Seconds to wait for a local host\'s libvirt daemon to accept '
             'connections.'),
    cfg.IntOpt(
        'reconnect_attempts',
        default=5,
        min=0,
        help='How many times a driver call whose connection to libvirt was '
             'lost (the daemon restarted, or is restarting) reconnects and '
             'runs again before its step fails. The calls are idempotent, '
             'so a call cut off half-way is finished by the next one.'),
    cfg.FloatOpt(
        'reconnect_interval',
        default=1.0,
        min=0.0,
        help='Seconds before the first reconnection of a call; each next '
             'one waits that much longer (1, 2, 3... s by default).'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
