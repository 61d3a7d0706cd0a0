"""Resize and cold migration: one flow, as in Nova.

A cold migration is a resize that keeps the flavor and never stays on its
host; the API decides that, the flow is the same.
"""
from taskflow.patterns import linear_flow

from resize_flows import plugins as rf_plugins
from resize_flows.tasks import dest
from resize_flows.tasks import disk
from resize_flows.tasks import lifecycle
from resize_flows.tasks import records
from resize_flows.tasks import source

#: Name of the subflow that claims and prepares one destination, retried
#: on the next alternate host when it fails.
DESTINATION_SUBFLOW = 'ClaimAndPrepareDestination'


def get_resize_flow(operation='resize', plugins=()):
    """Build the flow that moves an instance to its destination, with the
    tasks of ``plugins`` (names, in order; :mod:`resize_flows.plugins`)
    at their points (marked P below).

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
    P. before_source_power_off.
    6. PowerOffSource: ``migrating``.
    7. MoveSourceToResize: resize snapshot, ``<uuid>_resize``.
    8. CopyDisk: disk to the destination, ``post-migrating``.
    P. before_dest_define.
    9. FinishMigration: grow disk, define (with the plugins' devices),
       power on if it was active.
    P. after_dest_runs.
    10. MarkMigrationFinished: RESIZED on the destination, ``finished``.

    Requires ``migration_uuid`` in the store.
    """
    destination = linear_flow.Flow(DESTINATION_SUBFLOW,
                                   retry=records.TryDestinations())
    destination.add(
        records.ClaimResources(),
        dest.PrepareDestination(),
    )
    loaded = rf_plugins.load(plugins)

    def at(point):
        return rf_plugins.tasks_at(loaded, operation, point)
    flow = linear_flow.Flow(operation)
    flow.add(
        lifecycle.BeginMigration(),
        records.SelectDestination(),
        destination,
        *at(rf_plugins.BEFORE_SOURCE_POWER_OFF),
        source.PowerOffSource(),
        source.MoveSourceToResize(),
        disk.CopyDisk(),
        *at(rf_plugins.BEFORE_DEST_DEFINE),
        dest.FinishMigration(plugins=plugins),
        *at(rf_plugins.AFTER_DEST_RUNS),
        records.MarkMigrationFinished(),
    )
    return flow
