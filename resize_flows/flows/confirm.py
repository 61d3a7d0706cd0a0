"""Confirm a resize or cold migration."""
from taskflow.patterns import linear_flow

from resize_flows import plugins as rf_plugins
from resize_flows.tasks import lifecycle
from resize_flows.tasks import records
from resize_flows.tasks import source


def get_confirm_resize_flow(plugins=()):
    """Build the flow that makes a finished move final, with the tasks of
    ``plugins`` (names, in order) at their point (P).

    1. BeginConfirm: lifecycle; undoing the flow leaves the move
       ``finished`` and RESIZED, to be confirmed or reverted again.
    2. ReleaseSourceClaim: the source usage held by the migration goes.
    3. MarkConfirmed: ACTIVE or STOPPED on the destination, ``confirmed``.
    P. confirm_source_cleanup.
    4. CleanupSource: undefine the source domain (host changed), delete
       the snapshot and ``<uuid>_resize``: the point of no return, last.

    Requires ``migration_uuid`` in the store.
    """
    flow = linear_flow.Flow('confirm_resize')
    flow.add(
        lifecycle.BeginConfirm(),
        records.ReleaseSourceClaim(),
        records.MarkConfirmed(),
        *rf_plugins.tasks_at(rf_plugins.load(plugins), 'confirm_resize',
                             rf_plugins.CONFIRM_SOURCE_CLEANUP),
        source.CleanupSource(),
    )
    return flow
