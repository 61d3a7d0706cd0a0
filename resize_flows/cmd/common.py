"""What the commands of ``resize-flows`` share.

The caller's request context (from the application's global options), the
record-to-columns helper of every show, the base classes of the move
commands (resize, migrate, confirm, revert, flow resume and rollback), and
the one format of a task's line and of its progress, printed by
:class:`ProgressListener` for a flow run in this process and by
:func:`follow` for one a conductor runs.
"""
import time

from cliff import show
from taskflow.listeners import base as listener_base
from taskflow import states as tf_states

from resize_flows import api
from resize_flows.conf import CONF
from resize_flows import states


def caller_context(app):
    """A request context for a command of ``app``: who its global options
    (or OS_USER_ID, OS_PROJECT_ID, OS_ROLES) say; an admin by default."""
    opts = getattr(app, 'options', None)
    if opts is None:
        return api.get_admin_context()
    roles = tuple(r.strip() for r in (opts.os_roles or '').split(',')
                  if r.strip())
    return api.RequestContext(user_id=opts.os_user_id,
                              project_id=opts.os_project_id, roles=roles)


def as_columns(record, columns=None):
    """``(columns, values)`` of ``record`` for a show command: the given
    columns, or all of them sorted."""
    columns = columns or sorted(record)
    return columns, [record[c] for c in columns]


def task_line(name, state, took=None):
    """The line printed when a task reaches ``state``: its name, the state
    and, when known, the seconds it took."""
    return '  %-24s %-15s %s\n' % (name, state,
                                   '' if took is None else '%6.2fs' % took)


def progress_line(name, percent):
    """The line printed when a running task reports another 10 %."""
    return '  %-24s %3d%%\n' % (name, percent)


class ProgressListener(listener_base.Listener):
    """Prints each task's transitions to a stream (stderr) while a flow
    runs, and the progress of a task that reports it (CopyDisk) as it goes:
    on a terminal a bar redrawn in place (``\\r``) until the task's line
    replaces it, elsewhere one line per 10 % crossed.

    Task progress is not on the engine's notifier: each task has its own
    (TaskFlow's ``update_progress`` event), so the listener registers there
    too. The engine is serial: every callback comes on its one thread.
    """

    #: taskflow.task.EVENT_UPDATE_PROGRESS
    PROGRESS_EVENT = 'update_progress'
    BAR_WIDTH = 30

    def __init__(self, engine, stream):
        super().__init__(engine,
                         task_listen_for=states.TASK_TRANSITIONS)
        self._stream = stream
        self._started = {}
        self._progress_callbacks = []
        self._shown = {}            # running task -> last percent shown
        self._bar = 0               # width of the bar on screen, 0: none
        try:
            self._tty = bool(stream.isatty())
        except (AttributeError, ValueError, OSError):
            self._tty = False

    def register(self):
        super().register()
        if self._progress_callbacks:
            return
        try:
            self._engine.compile()
            graph = self._engine.compilation.execution_graph
        except AttributeError:      # an engine without a compilation
            return
        for atom, data in graph.nodes(data=True):
            if (data.get('kind') == 'task'
                    and atom.notifier.can_be_registered(self.PROGRESS_EVENT)):
                callback = self._progress_callback(atom.name)
                atom.notifier.register(self.PROGRESS_EVENT, callback)
                self._progress_callbacks.append((atom, callback))

    def deregister(self):
        while self._progress_callbacks:
            atom, callback = self._progress_callbacks.pop()
            atom.notifier.deregister(self.PROGRESS_EVENT, callback)
        super().deregister()

    def _progress_callback(self, name):
        def callback(_event_type, details):
            self._on_progress(name, details.get('progress'))
        return callback

    def _on_progress(self, name, fraction):
        last = self._shown.get(name)
        if fraction is None or last is None or name not in self._started:
            return                  # not running: the engine's own 0 or 1
        percent = int(100 * min(max(fraction, 0.0), 1.0))
        if self._tty:
            if percent == last:
                return
            filled = self.BAR_WIDTH * percent // 100
            text = '  %-24s [%s%s] %3d%%' % (
                name, '#' * filled, '.' * (self.BAR_WIDTH - filled), percent)
            self._stream.write('\r' + text.ljust(self._bar))
            self._bar = len(text)
        else:
            if percent >= 100 or percent // 10 <= last // 10:
                return
            self._stream.write(progress_line(name, percent))
        self._shown[name] = percent
        self._stream.flush()

    def _task_receiver(self, state, details):
        name = details['task_name']
        now = time.monotonic()
        if state in (tf_states.RUNNING, tf_states.REVERTING):
            self._started[name] = now
            self._shown[name] = 0
            return
        took = now - self._started.pop(name, now)
        self._shown.pop(name, None)
        if self._bar:
            self._stream.write('\r%s\r' % (' ' * self._bar))
            self._bar = 0
        self._stream.write(task_line(name, state, took))
        self._stream.flush()


def follow(app, flow_id, stream, interval=None, quiet=False):
    """Follow a flow that another process runs (a conductor) through the
    flow log until it ends: each task's line as it finishes, as
    ProgressListener prints them, and a running task's reported progress
    every 10 %. Returns the flow as :func:`api.show_flow` gives it to the
    caller of ``app`` (each look a request of its own)."""
    interval = interval or CONF.jobboard.wait_poll_interval
    printed = {}
    shown = {}
    while True:
        flow = api.show_flow(caller_context(app), flow_id)
        for t in flow['tasks']:
            key = (t['state'], t['intention'])
            if t['state'] == tf_states.RUNNING and t['progress']:
                percent = int(100 * t['progress'])
                if percent // 10 > shown.get(t['name'], 0) // 10 \
                        and percent < 100 and not quiet:
                    stream.write(progress_line(t['name'], percent))
                    stream.flush()
                    shown[t['name']] = percent
            if t['state'] in (tf_states.PENDING, tf_states.RUNNING,
                              tf_states.REVERTING) or \
                    printed.get(t['name']) == key:
                continue
            printed[t['name']] = key
            if not quiet:
                stream.write(task_line(t['name'], t['state'],
                                       t['duration']))
                stream.flush()
        # Queued: no conductor has claimed its job yet; interrupted: one
        # will resume it.
        if flow['status'] not in ('queued', 'running', 'interrupted'):
            return flow
        time.sleep(interval)


def quiet(cmd, parsed):
    """Whether the tasks are not to be printed: the command's own
    ``--quiet`` or cliff's global ``-q``/``--quiet``, which argparse gives
    the application wherever it is on the line (verbose_level 0)."""
    if getattr(parsed, 'quiet', False):
        return True
    options = getattr(cmd.app, 'options', None)
    return getattr(options, 'verbose_level', 1) == 0


def progress_listeners(cmd, parsed):
    """The listeners a move command gives the engine: a ProgressListener
    on the application's stderr, none when quiet."""
    if quiet(cmd, parsed):
        return ()
    return (lambda engine: ProgressListener(engine, cmd.app.stderr),)


def move_result(op, started=False):
    """What a move command prints: with ``started``, the migration as
    the operation started it (--no-wait), else as it is now."""
    mig = (started and getattr(op, 'started_migration', None)
           or op.migration)
    record = {
        'migration': mig['uuid'], 'type': mig['migration_type'],
        'status': mig['status'], 'source': mig['source_compute'],
        'dest': mig['dest_compute'], 'flow': op.flow_id,
        'flow_state': 'RUNNING' if started else (op.flow_state
                                                 or 'RUNNING'),
        'request_id': op.request_id,
    }
    return as_columns(record, ['migration', 'type', 'status', 'source',
                               'dest', 'flow', 'flow_state', 'request_id'])


class MoveCommand(show.ShowOne):
    """A command that runs a flow: ``--quiet`` hides its tasks. Before
    one runs, the application resumes interrupted flows when
    [flows]/resume_interrupted says so."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--quiet', '-q', action='store_true',
                            help='Do not print the tasks as they run.')
        return parser


class OperationCommand(MoveCommand):
    """A move: waits for its flow's end by default, showing its tasks;
    with the jobboard enabled, posts it and returns unless --wait."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--no-wait', dest='wait', action='store_false', default=None,
            help='Print the migration, flow and request ids as soon as the '
                 'operation has started, without its tasks. Without a '
                 'jobboard the flow runs in this process until it ends, '
                 'so the command exits then; interrupted, the flow is '
                 'left to "flow resume" or "flow rollback". With '
                 '[jobboard]/enabled this is the default: a conductor '
                 'runs the flow.')
        parser.add_argument(
            '--wait', dest='wait', action='store_true', default=None,
            help='Wait for the flow\'s end, printing its tasks as they '
                 'finish (the default without a jobboard; with one, the '
                 'job is followed in the flow log while a conductor runs '
                 'it).')
        return parser

    def run_operation(self, parsed, call, *args, **kwargs):
        """Call the API's ``call`` (resize, migrate, ...) as the options
        say and return what the command prints."""
        wait = parsed.wait
        if wait is None:
            wait = not CONF.jobboard.enabled
        if CONF.jobboard.enabled:
            op = call(caller_context(self.app), *args, wait=False, **kwargs)
            if wait and isinstance(op, api.PostedOperation):
                follow(self.app, op.flow_id, self.app.stderr,
                       quiet=quiet(self, parsed))
                op.wait()
            elif wait:
                op.wait()
            return move_result(op)
        listeners = progress_listeners(self, parsed) if wait else ()
        op = call(caller_context(self.app), *args, wait=wait,
                  listeners=listeners, **kwargs)
        return move_result(op, started=not wait)


def tell_unreleased(app, what, ident, server):
    """One line on stderr: a running guest did not let a detached device
    go (the detach has still happened in the definition and records)."""
    app.stderr.write(
        '%s %s: the running guest of server %s did not release it; its '
        'definition no longer has it, the running guest keeps it until it '
        'stops\n' % (what, ident, server))
