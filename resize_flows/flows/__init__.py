"""Flow factories, one module per operation.

:func:`iter_atoms` walks a flow's atoms in order, through nested flows:
the resize flow keeps its destination's claim and preparation in a subflow
with a retry controller, so ``for atom in flow`` alone would miss them.
"""
from taskflow import flow as tf_flow
from taskflow import retry as tf_retry


def iter_atoms(flow, retries=True):
    """Every atom of ``flow`` in order, nested flows walked through; a
    subflow's retry controller comes before its atoms (left out with
    ``retries=False``)."""
    if flow.retry is not None and retries:
        yield flow.retry
    for item in flow:
        if isinstance(item, tf_flow.Flow):
            yield from iter_atoms(item, retries)
        elif retries or not isinstance(item, tf_retry.Retry):
            yield item


def iter_tasks(flow):
    """The tasks of ``flow`` in order (no retry controllers)."""
    return iter_atoms(flow, retries=False)
