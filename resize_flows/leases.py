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
import uuid as uuidlib

from resize_flows.conf import CONF
from resize_flows import exception
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

    def release(self):
        self._stop.set()
        if self._thread is not None and \
                self._thread is not threading.current_thread():
            self._thread.join()
        flowindex.lease_release(self.flow_id, self.owner, self.token)


# -- fencing -----------------------------------------------------------------

_CURRENT = threading.local()


@contextlib.contextmanager
def holding(flow_id, owner, token):
    """The flow this thread runs, under this lease, for the block."""
    before = getattr(_CURRENT, 'held', None)
    _CURRENT.held = (flow_id, owner, token)
    try:
        yield
    finally:
        _CURRENT.held = before


def check(what='its next step'):
    """Raise FlowFenced when this thread's flow is no longer held by it."""
    held = getattr(_CURRENT, 'held', None)
    if held is None:
        return
    flow_id, owner, token = held
    lease = flowindex.lease_get(flow_id)
    if lease is None or lease['owner'] != owner or (
            token is not None and lease['token'] != token):
        raise exception.FlowFenced(flow_id=flow_id, owner=owner,
                                   token=token, what=what)
