"""Flow factories, one module per operation, and the registry of operations.

:data:`OPERATIONS` names each operation once: the factory that builds its
flow (by dotted path: the flow log stores it, and resume re-imports it),
the keyword arguments for that factory, Nova's instance action it records,
and a one-line summary for help texts.

:func:`iter_atoms` walks a flow's atoms in order, through nested flows:
the resize flow keeps its destination's claim and preparation in a subflow
with a retry controller, so ``for atom in flow`` alone would miss them.
"""
import dataclasses

from taskflow import flow as tf_flow
from taskflow import retry as tf_retry


@dataclasses.dataclass(frozen=True)
class FlowKind:
    """One operation that runs as a flow."""

    name: str  # 'resize', 'migrate', 'confirm_resize', 'revert_resize'
    factory: str         # the dotted factory path (stored in the flow log)
    factory_kwargs: dict  # e.g. {'operation': 'resize'}
    action: str          # Nova's instance action: resize, migrate, ...
    summary: str         # one line for help texts


#: operation name -> its FlowKind
OPERATIONS = {k.name: k for k in (
    FlowKind(name='resize',
             factory='resize_flows.flows.resize.get_resize_flow',
             factory_kwargs={'operation': 'resize'},
             action='resize',
             summary='Resize a server to another flavor; it waits, RESIZED, '
                     'for confirm or revert.'),
    FlowKind(name='migrate',
             factory='resize_flows.flows.resize.get_resize_flow',
             factory_kwargs={'operation': 'migrate'},
             action='migrate',
             summary='Cold-migrate a server to another host, keeping its '
                     'flavor.'),
    FlowKind(name='confirm_resize',
             factory='resize_flows.flows.confirm.get_confirm_resize_flow',
             factory_kwargs={},
             action='confirmResize',
             summary='Confirm a resize or migration of a server.'),
    FlowKind(name='revert_resize',
             factory='resize_flows.flows.revert.get_revert_resize_flow',
             factory_kwargs={},
             action='revertResize',
             summary='Revert a resize or migration of a server.'),
)}


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
