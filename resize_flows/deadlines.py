"""Deadlines of tasks: a task that runs too long fails, and is undone.

Every execute and revert of a task of a flow that this process holds
runs on a worker thread of its own while the flow's thread waits for it
until the task's deadline (``[flows]/task_timeout``, or the task's entry
of ``[flows]/task_timeouts``; 0: none). The disk copy's deadline follows
its progress instead (a task with ``deadline_follows_progress``): it is
``[flows]/copy_stall_timeout`` from the last byte that moved
(:func:`moved`). Past the deadline the flow's thread raises
:class:`~resize_flows.exception.TaskTimeout` (for the copy
:class:`~resize_flows.exception.CopyStalled`), which fails the task, and
TaskFlow undoes the flow; the worker is given up: its next
``leases.check()`` raises the same error (a copy stops between chunks,
rsync is killed), and a call that never returns (a stopped libvirt
daemon) leaves it hung. The undo of a task waits for its hung execute to
end first, within the undo's own deadline, so that the two never run at
once; past that, the undo step fails and the flow is stuck, with the
reason in ``flow show``.

The flow's :class:`~resize_flows.leases.Lease` knows the running task's
deadline: the lease is not renewed past it plus
``[flows]/deadline_grace``, so a process hung elsewhere (in the flow's
own thread) loses the flow to another process, under fencing.
"""
import contextlib
import logging
import queue
import threading
import time

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import leases

LOG = logging.getLogger(__name__)

#: How long a given-up worker gets to stop at its own safe point (and
#: kill its rsync) before it is left hung.
STOP_WAIT = 5.0

#: {(flow_id, task name): worker thread} of executes given up while hung.
_HUNG = {}
_HUNG_LOCK = threading.Lock()


class Deadline:
    """A task's deadline: ``seconds`` from its start, or, when it follows
    progress, from the last time its work moved."""

    def __init__(self, task, seconds, follows_progress=False):
        self.task = task
        self.seconds = seconds
        self.follows_progress = follows_progress
        self.expires = (time.monotonic() + seconds) if seconds else None

    def moved(self):
        if self.follows_progress and self.seconds:
            self.expires = time.monotonic() + self.seconds

    def pause(self):
        if self.follows_progress:
            self.expires = None

    def passed(self):
        return self.expires is not None and time.monotonic() >= self.expires

    def remaining(self):
        if self.expires is None:
            return None
        return max(self.expires - time.monotonic(), 0.0)

    def error(self, detail=''):
        kind = (exception.CopyStalled if self.follows_progress
                else exception.TaskTimeout)
        return kind(task=self.task, seconds=self.seconds, detail=detail)


def seconds_for(name, follows_progress=False, undo=False):
    """The deadline in seconds of task ``name`` (0: none); of its undo
    (``undo``): the entry ``Name.revert`` of ``[flows]/task_timeouts``
    if there is one, else the task's."""
    overrides = CONF.flows.task_timeouts or {}
    if undo and name + '.revert' in overrides:
        name += '.revert'
    if name in overrides:
        try:
            return max(int(float(overrides[name])), 0)
        except ValueError:
            raise exception.InvalidConfiguration(
                reason='[flows]/task_timeouts: %s:%s is not a number of '
                       'seconds' % (name, overrides[name]))
    if follows_progress:
        return CONF.flows.copy_stall_timeout
    return CONF.flows.task_timeout


def moved():
    """The running task's work moved (bytes of a copy): its deadline, if
    it follows progress, starts again."""
    held = leases.current()
    if held is not None and held.deadline is not None:
        held.deadline.moved()


@contextlib.contextmanager
def waiting():
    """A wait of the running task for another process's work that has a
    bound of its own (the lock of another fetch of the same image base,
    ``[image_cache]/fetch_lock_timeout``): a deadline that follows
    progress stops meanwhile (no byte moves, and nothing is stalled),
    and starts again from its end."""
    held = leases.current()
    deadline = held.deadline if held is not None else None
    if deadline is None or not deadline.follows_progress:
        yield
        return
    deadline.pause()
    try:
        yield
    finally:
        deadline.moved()


def call(name, undo, follows_progress, fn):
    """``fn()`` as task ``name``'s execute (``undo`` False) or revert,
    under its deadline (see the module); directly when this thread holds
    no flow or the task has no deadline."""
    held = leases.current()
    seconds = seconds_for(name, follows_progress and not undo, undo)
    if held is None or not seconds:
        if undo and held is not None:
            _wait_hung(held, name, None)
        return fn()
    label = '%s%s' % (name, ' (undo)' if undo else '')
    deadline = Deadline(label, seconds, follows_progress and not undo)
    worker_held = held.child(deadline)
    box = {}
    finished = threading.Event()
    relay = worker_held.relay = queue.Queue()

    def target():
        try:
            with leases.holding(worker_held):
                if undo:
                    _wait_hung(worker_held, name, deadline)
                box['result'] = fn()
        except BaseException as e:     # handed to the flow's thread
            box['error'] = e
        finally:
            # Wakes the flow's thread at once (not at its next poll).
            finished.set()
            relay.put((_nothing, (), threading.Event()))

    # Named after the flow's thread (a conductor's names its job).
    worker = threading.Thread(
        target=target, daemon=True,
        name='%s/%s' % (threading.current_thread().name, name))
    lease = held.lease
    if lease is not None:
        lease.deadline = deadline
    try:
        worker.start()
        while not finished.is_set() and not deadline.passed():
            remaining = deadline.remaining()
            _relay(relay, 0.2 if remaining is None else min(remaining, 0.2))
        _relay(relay, None)
        if not finished.is_set():
            error = deadline.error(
                HUNG_DETAIL if undo and _still_hung(held.flow_id, name)
                else '')
            LOG.error('flow %s: %s', held.flow_id, error)
            worker_held.abandoned = error
            worker.join(STOP_WAIT)
            if worker.is_alive() and not undo:
                with _HUNG_LOCK:
                    _HUNG[(held.flow_id, name)] = worker
            raise error
    finally:
        if lease is not None:
            lease.deadline = None
    if 'error' in box:
        raise box['error']
    return box.get('result')


def _nothing():
    """What a worker that ended hands the flow's thread: a wake-up."""


def _relay(relay, timeout):
    """Run in the flow's thread what the worker handed it (TaskFlow's
    storage is the flow's thread's while a task runs): wait up to
    ``timeout`` for one call (None: only what is queued already)."""
    while True:
        try:
            fn, args, done = (relay.get_nowait() if timeout is None
                              else relay.get(timeout=timeout))
        except queue.Empty:
            return
        try:
            fn(*args)
        except Exception:
            LOG.exception('%s failed in the flow\'s thread', fn)
        finally:
            done.set()
        timeout = None


def in_flow_thread(fn, *args):
    """Call ``fn(*args)`` in the flow's own thread (TaskFlow's
    ``update_progress``, which takes the storage's lock the flow's thread
    holds while the task runs): at once there, queued from a task's
    worker thread, run while the flow's thread waits for the task, and
    waited for."""
    held = leases.current()
    relay = getattr(held, 'relay', None)
    if relay is None:
        fn(*args)
        return
    done = threading.Event()
    relay.put((fn, args, done))
    # Done when the flow's thread has run it (so a report is in the flow
    # log once this returns); not waited for once the task was given up.
    while not done.wait(0.2):
        if held.abandoned is not None:
            return


HUNG_DETAIL = '; its execute, given up at its own deadline, still hangs'


def _still_hung(flow_id, name):
    with _HUNG_LOCK:
        worker = _HUNG.get((flow_id, name))
    return worker is not None and worker.is_alive()


def _wait_hung(held, name, deadline):
    """Wait until the given-up execute of task ``name`` of this flow has
    ended (an undo must not run beside it): no longer than ``deadline``
    (then this undo's own TaskTimeout, naming the hung execute)."""
    with _HUNG_LOCK:
        worker = _HUNG.get((held.flow_id, name))
    if worker is None:
        return
    while worker.is_alive():
        if held.abandoned is not None:
            raise held.abandoned
        if deadline is not None and deadline.passed():
            raise deadline.error(HUNG_DETAIL)
        worker.join(0.5)
    with _HUNG_LOCK:
        _HUNG.pop((held.flow_id, name), None)


def hung():
    """[(flow_id, task name)] of the executes given up while hung that
    have not ended yet (tests, ``flow show``)."""
    with _HUNG_LOCK:
        return sorted(key for key, worker in _HUNG.items()
                      if worker.is_alive())
