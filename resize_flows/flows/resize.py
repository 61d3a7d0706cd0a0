"""Resize and cold migration: one flow, as in Nova.

A cold migration is a resize that keeps the flavor and never stays on its
host; the API decides that, the flow is the same.
"""
from taskflow.patterns import linear_flow

from resize_flows.tasks import dest
from resize_flows.tasks import disk
from resize_flows.tasks import lifecycle
from resize_flows.tasks import records
from resize_flows.tasks import source

#: Name of the subflow that claims and prepares one destination, retried
#: on the next alternate host when it fails.
DESTINATION_SUBFLOW = 'ClaimAndPrepareDestination'


def get_resize_flow(operation='resize'):
    """Build the flow that moves an instance to its destination.

    1. BeginMigration: lifecycle; undoing the flow ends here (migration
       ``error``, instance back as it was).
    2. SelectDestination: the requested host, or the scheduler's hosts,
       best first, at most ``[scheduler]/max_attempts`` of them.
    3. TryDestinations (retry controller): the next of those hosts; when
       a step of 4-5 fails it undoes them and tries the next host, and
       when none is left the whole flow is undone.
    4. ClaimResources: source usage to the migration, destination claim,
       the migration's ``dest_compute``.
    5. PrepareDestination: the destination answers and is clear.
    6. PowerOffSource: ``migrating``.
    7. MoveSourceToResize: resize snapshot, ``<uuid>_resize``.
    8. CopyDisk: disk to the destination, ``post-migrating``.
    9. FinishMigration: grow disk, define, power on if it was active.
    10. MarkMigrationFinished: RESIZED on the destination, ``finished``.

    Requires ``migration_uuid`` in the store.
    """
    destination = linear_flow.Flow(DESTINATION_SUBFLOW,
                                   retry=records.TryDestinations())
    destination.add(
        records.ClaimResources(),
        dest.PrepareDestination(),
    )
    flow = linear_flow.Flow(operation)
    flow.add(
        lifecycle.BeginMigration(),
        records.SelectDestination(),
        destination,
        source.PowerOffSource(),
        source.MoveSourceToResize(),
        disk.CopyDisk(),
        dest.FinishMigration(),
        records.MarkMigrationFinished(),
    )
    return flow
