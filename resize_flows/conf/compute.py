"""[compute] options: how moves behave, as Nova's options of the same name."""
from oslo_config import cfg

group = cfg.OptGroup('compute', title='Resize and migration behaviour')

opts = [
    cfg.BoolOpt(
        'allow_resize_to_same_host',
        default=False,
        help='Let a resize choose the host the instance is on. A cold '
             'migration never does.'),
    cfg.IntOpt(
        'resize_confirm_window',
        default=0,
        min=0,
        help='Seconds after which a finished resize or cold migration that '
             'nobody confirmed or reverted is confirmed automatically (by '
             'the periodic task of a long-running process, or by '
             '"resize-flows confirm-expired" from cron). 0 disables it.'),
    cfg.IntOpt(
        'shutdown_timeout',
        default=60,
        min=0,
        help='Seconds a guest is given to shut down cleanly (ACPI) before '
             'it is powered off hard. 0 powers off at once.'),
    cfg.IntOpt(
        'shutdown_retry_interval',
        default=10,
        min=1,
        help='Seconds between two presses of a guest\'s ACPI power button '
             'while it is given shutdown_timeout seconds to shut down: a '
             'guest may miss or ignore a press.'),
    cfg.IntOpt(
        'console_output_max_bytes',
        default=1024 * 1024,
        min=1024,
        help='Most bytes of a server\'s serial console (console.log) that '
             '"server console log" reads: the end of a longer log. The '
             'guest writes that file, so its size is the guest\'s choice.'),
    cfg.IntOpt(
        'running_wait_timeout',
        default=60,
        min=1,
        help='Seconds to wait for a guest that was powered on to report '
             'RUNNING before the step fails.'),
    cfg.IntOpt(
        'device_detach_attempts',
        default=8,
        min=1,
        help='How many times a device (a plugin\'s NIC or volume) is '
             'detached from a running guest, which lets it go only when '
             'it acknowledges the unplug, before giving up: the definition '
             'no longer has it, the running guest keeps it until it stops '
             '(as Nova\'s option of the same name).'),
    cfg.IntOpt(
        'device_detach_timeout',
        default=20,
        min=1,
        help='Seconds to wait for a running guest to let a detached device '
             'go before the detach is sent again (as Nova\'s option of the '
             'same name).'),
    cfg.FloatOpt(
        'power_poll_interval',
        default=0.2,
        min=0.01,
        help='Seconds between two reads of a guest\'s power state while '
             'waiting for it to change.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
