"""Leases: which process holds a flow, and its check that it still does.

A process holds a flow while it works on it through a lease: a row of the
flow log (``persistence/flowindex.py``) naming its owner, renewed in the
background (:class:`Lease`), with a fencing token that grows each time the
lease changes hands. The flow log refuses a stale holder's writes
(``persistence/flowlog.py``). An owner is named ``host:pid:label``
(:func:`owner_name`); :func:`owner` is this process's name, which a
conductor sets once at start-up to its own (:func:`set_owner`).

A task that stalled in the middle of its execute (a long copy, a stopped
process) would still make its own side effects when it wakes up, before
the engine's next write is refused. A task calls :func:`check` between
its slow part and the records it changes: a holder whose lease was taken
over gets :class:`~resize_flows.exception.FlowFenced` there, so its task
fails before touching anything more, and the engine stops at its next
write. (A check is one indexed read; the window between the check and the
write it guards stays, and is short.) :func:`engine.run` says which flow
and lease the running thread works for (:func:`holding`); without one (a
task called outside a flow), :func:`check` does nothing.
"""
import contextlib
import logging
import os
import socket
import threading
import time
import uuid as uuidlib

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.persistence import flowaborts
from resize_flows.persistence import flowindex
from resize_flows.persistence import flowlog

LOG = logging.getLogger(__name__)


def owner_name(host=None, label=None):
    """A lease owner's name, ``host:pid:label``: ``host`` (default: this
    host's name), this process's id, and ``label`` (default: a random
    suffix, so that a restarted process is another owner)."""
    return '%s:%d:%s' % (host or socket.gethostname(), os.getpid(),
                         label or uuidlib.uuid4().hex[:8])


_owner = owner_name()


def owner():
    """This process's name as a lease owner."""
    return _owner


def set_owner(name):
    """Name this process's leases ``name`` from now on (a conductor, once
    at start-up: its leases then carry the conductor's name)."""
    global _owner
    _owner = name


class Lease:
    """This process's hold on a flow, renewed in the background.

    ``token`` is the lease's fencing token: the flow log refuses this
    process's writes of the flow once another process holds the lease
    (:meth:`backend`). ``on_lost`` is called (once, from the renewing
    thread) when the lease turns out to be someone else's.
    """

    def __init__(self, flow_id, owner=None, on_lost=None):
        self.flow_id = flow_id
        self.owner = owner or _owner
        self.token = None
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = None
        self.lost = False
        #: The deadline of the task this lease's flow runs now (set by
        #: ``deadlines``): past it plus ``[flows]/deadline_grace`` the
        #: lease is no longer renewed, so that a holder hung in a call
        #: that never returns loses the flow.
        self.deadline = None
        self.overdue = False

    def backend(self):
        """The flow log, fenced by this lease."""
        return flowlog.get_backend().held_by(self.owner, self.token)

    def acquire(self):
        self.token = flowindex.lease_acquire(self.flow_id, self.owner,
                                             CONF.flows.lease_seconds)
        self._thread = threading.Thread(
            target=self._renew, name='lease-%s' % self.flow_id, daemon=True)
        self._thread.start()
        return self

    def _renew(self):
        seconds = CONF.flows.lease_seconds
        while not self._stop.wait(seconds / 3.0):
            if self._past_deadline():
                continue
            try:
                if not flowindex.lease_renew(self.flow_id, self.owner,
                                             seconds, self.token):
                    self.lost = True
                    LOG.error('lost the lease of flow %s', self.flow_id)
                    if self.on_lost is not None:
                        self.on_lost(self)
                    return
            except Exception:
                LOG.exception('could not renew the lease of flow %s',
                              self.flow_id)

    def _past_deadline(self):
        deadline = self.deadline
        if deadline is None or deadline.expires is None or \
                time.monotonic() < deadline.expires + \
                CONF.flows.deadline_grace:
            self.overdue = False
            return False
        if not self.overdue:
            LOG.error('flow %s: %s is past its deadline; its lease is no '
                      'longer renewed', self.flow_id, deadline.task)
        self.overdue = True
        return True

    def release(self):
        self._stop.set()
        if self._thread is not None and \
                self._thread is not threading.current_thread():
            self._thread.join()
        flowindex.lease_release(self.flow_id, self.owner, self.token)


# -- fencing -----------------------------------------------------------------

_CURRENT = threading.local()


class Held:
    """What a thread works for: a flow under a lease (its owner and
    token, and the :class:`Lease` when this process holds it), and, in a
    task's worker thread (``deadlines``), the task's deadline and the
    error to raise at its next :func:`check` once it was given up."""

    def __init__(self, flow_id, owner, token, lease=None, deadline=None):
        self.flow_id = flow_id
        self.owner = owner
        self.token = token
        self.lease = lease
        self.deadline = deadline
        #: Set when the thread's task was given up (past its deadline):
        #: the exception its next check raises.
        self.abandoned = None
        #: In a task's worker thread: the queue of calls for the flow's
        #: thread (``deadlines.in_flow_thread``).
        self.relay = None

    def child(self, deadline):
        """The same hold, for a task's worker thread under ``deadline``."""
        return Held(self.flow_id, self.owner, self.token, self.lease,
                    deadline)


def current():
    """What this thread works for (a :class:`Held`), or None."""
    return getattr(_CURRENT, 'held', None)


@contextlib.contextmanager
def holding(flow_id, owner=None, token=None, lease=None):
    """The flow this thread runs, under this lease, for the block
    (``flow_id`` may be a :class:`Held` already)."""
    before = getattr(_CURRENT, 'held', None)
    _CURRENT.held = flow_id if isinstance(flow_id, Held) else Held(
        flow_id, owner, token, lease)
    try:
        yield
    finally:
        _CURRENT.held = before


def check(what='its next step'):
    """A safe point of a running flow. Raise FlowFenced when this
    thread's flow is no longer held by it, FlowAborted when an operator
    asked to abort it, and the task's TaskTimeout when the task this
    thread runs was given up past its deadline."""
    held = getattr(_CURRENT, 'held', None)
    if held is None:
        return
    if held.abandoned is not None:
        raise held.abandoned
    lease = flowindex.lease_get(held.flow_id)
    if lease is None or lease['owner'] != held.owner or (
            held.token is not None and lease['token'] != held.token):
        raise exception.FlowFenced(flow_id=held.flow_id, owner=held.owner,
                                   token=held.token, what=what)
    request = flowaborts.abort_get(held.flow_id)
    if request is not None:
        raise exception.FlowAborted(
            flow_id=held.flow_id,
            requested_by=request['requested_by'] or 'an operator')
