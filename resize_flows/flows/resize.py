"""Resize and cold migration: one flow, as in Nova.

A cold migration is a resize that keeps the flavor and never stays on its
host; the API decides that, the flow is the same.
"""
from taskflow.patterns import linear_flow

from resize_flows.tasks import dest
from resize_flows.tasks import disk
from resize_flows.tasks import records
from resize_flows.tasks import source


def get_resize_flow(operation='resize'):
    """Build the flow that moves an instance to its destination.

    1. BeginMigration: lifecycle; undoing the flow ends here (migration
       ``error``, instance back as it was).
    2. SelectDestination: the requested host, or the scheduler's choice.
    3. ClaimResources: source usage to the migration, destination claim.
    4. PrepareDestination: the destination answers and is clear.
    5. PowerOffSource: ``migrating``.
    6. MoveSourceToResize: resize snapshot, ``<uuid>_resize``.
    7. CopyDisk: disk to the destination, ``post-migrating``.
    8. FinishMigration: grow disk, define, power on if it was active.
    9. MarkMigrationFinished: RESIZED on the destination, ``finished``.

    Requires ``migration_uuid`` in the store.
    """
    flow = linear_flow.Flow(operation)
    flow.add(
        records.BeginMigration(),
        records.SelectDestination(),
        records.ClaimResources(),
        dest.PrepareDestination(),
        source.PowerOffSource(),
        source.MoveSourceToResize(),
        disk.CopyDisk(),
        dest.FinishMigration(),
        records.MarkMigrationFinished(),
    )
    return flow
