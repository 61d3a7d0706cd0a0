"""Is this process still the holder of the flow it is running?

The flow log refuses a stale holder's writes (``persistence/flowlog.py``),
but a task that stalled in the middle of its execute (a long copy, a
stopped process) would still make its own side effects when it wakes up,
before the engine's next write is refused. A task calls :func:`check`
between its slow part and the records it changes: a holder whose lease was
taken over gets :class:`~resize_flows.exception.FlowFenced` there, so its
task fails before touching anything more, and the engine stops at its next
write. (A check is one indexed read; the window between the check and the
write it guards stays, and is short.)

:func:`engine.run` says which flow and lease the running thread works for;
without one (a task called outside a flow), :func:`check` does nothing.
"""
import contextlib
import threading

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
    from resize_flows import exception
    from resize_flows.persistence import repository
    flow_id, owner, token = held
    lease = repository.lease_get(flow_id)
    if lease is None or lease['owner'] != owner or (
            token is not None and lease['token'] != token):
        raise exception.FlowFenced(flow_id=flow_id, owner=owner,
                                   token=token, what=what)
