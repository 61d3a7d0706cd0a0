"""[testing] options: fault injection from outside a process."""
from oslo_config import cfg

group = cfg.OptGroup('testing', title='Fault injection (for test suites)')

opts = [
    cfg.ListOpt(
        'faults',
        default=[],
        help='Faults to inject, each TASK:POINT:ACTION[:EXCEPTION], e.g. '
             'CopyDisk:after-execute:crash. POINT is before-execute, '
             'after-execute, before-revert or after-revert (or window, '
             'TASK then naming a window of the API or engine: '
             'flow-logged, flow-stored, rollback-recorded, '
             'delete-claimed, delete-destroyed, device-held, '
             'fetch-locked); ACTION is raise (EXCEPTION: a dotted class '
             'path, default resize_flows.testing.faults.InjectedFault), '
             'crash (the process exits at once, no cleanup) or stop (the '
             'process stops itself with SIGSTOP until a SIGCONT). Also '
             'read from the '
             'environment as OS_TESTING__FAULTS. Ignored, with a warning, '
             'unless the process runs with the test-only switch '
             'RESIZE_FLOWS_FAULT_INJECTION=1 in its environment; a '
             'malformed fault is logged and not armed.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
