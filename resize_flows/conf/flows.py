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
    cfg.BoolOpt(
        'log_synchronous_commit',
        default=True,
        help='PostgreSQL only: each flow log write waits until the server '
             'has flushed it to disk. Off, the flow log uses PostgreSQL\'s '
             'asynchronous commit: a write still survives the death of '
             'this process (what resume needs), but a power loss of the '
             'database machine may lose the writes of the last fraction '
             'of a second, as SQLite in WAL mode may (see the README, '
             '"The flow log"). Faster where disk flushes are slow.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
