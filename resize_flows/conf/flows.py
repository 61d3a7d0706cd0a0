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
    cfg.IntOpt(
        'task_timeout',
        default=600,
        min=0,
        help='The deadline of every task of a flow, and of its undo, in '
             'seconds: a task still running past it fails (TaskTimeout, '
             'naming the task and its deadline) and the flow is undone; '
             'an undo step past it leaves the flow stuck with the reason '
             'in "flow show". 0: no deadline. The disk copy (CopyDisk) '
             'has none of its own: it follows copy_stall_timeout.'),
    cfg.DictOpt(
        'task_timeouts',
        default={},
        help='Per-task deadlines in seconds that replace task_timeout, as '
             'TaskName:seconds (e.g. PowerOffSource:900,CopyDisk:7200); '
             'TaskName.revert:seconds for its undo alone. 0: no deadline '
             'for that task.'),
    cfg.IntOpt(
        'copy_stall_timeout',
        default=120,
        min=0,
        help='The disk copy fails (CopyStalled) when no byte of it has '
             'moved for this many seconds (a stopped rsync, a hung '
             'transfer), and the flow is undone. Also how long a fetch '
             'of an image base waits for the lock of another fetch of '
             'it that does not move (see [image_cache]/'
             'fetch_lock_timeout). 0: never.'),
    cfg.IntOpt(
        'deadline_grace',
        default=30,
        min=0,
        help='Seconds past a running task\'s deadline after which the '
             'lease of its flow is no longer renewed: a process hung in '
             'a call that never returns loses the flow, which another '
             'process may then resume or roll back (its late writes are '
             'fenced).'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
