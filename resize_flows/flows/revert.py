"""Revert a resize or cold migration."""
from taskflow.patterns import linear_flow

from resize_flows.tasks import dest
from resize_flows.tasks import lifecycle
from resize_flows.tasks import records
from resize_flows.tasks import source


def get_revert_resize_flow():
    """Build the flow that takes a finished move back.

    1. BeginRevert: lifecycle; undoing the flow leaves the move
       ``finished`` and RESIZED.
    2. DestroyDestination: guest off and undefined, files set aside.
    3. RestoreSource: ``<uuid>_resize`` back, disk rolled back to the resize
       snapshot, old domain defined.
    4. ReleaseDestinationClaim: destination claim dropped, source usage
       back to the instance.
    5. PowerOnSource: on if it was ACTIVE, wait for RUNNING.
    6. MarkReverted: old host, old flavor, old vm_state; ``reverted``.
    7. DeleteDestinationFiles: the point of no return, last.

    Requires ``migration_uuid`` in the store.
    """
    flow = linear_flow.Flow('revert_resize')
    flow.add(
        lifecycle.BeginRevert(),
        dest.DestroyDestination(),
        source.RestoreSource(),
        records.ReleaseDestinationClaim(),
        source.PowerOnSource(),
        records.MarkReverted(),
        dest.DeleteDestinationFiles(),
    )
    return flow
