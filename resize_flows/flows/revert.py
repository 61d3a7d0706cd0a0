"""Revert a resize or cold migration."""
from taskflow.patterns import linear_flow

from resize_flows import plugins as rf_plugins
from resize_flows.tasks import dest
from resize_flows.tasks import lifecycle
from resize_flows.tasks import records
from resize_flows.tasks import source


def get_revert_resize_flow(plugins=()):
    """Build the flow that takes a finished move back, with the tasks of
    ``plugins`` (names, in order) at their points (P).

    1. BeginRevert: lifecycle; undoing the flow leaves the move
       ``finished`` and RESIZED.
    2. DestroyDestination: guest off and undefined, files set aside.
    P. before_source_restore.
    3. RestoreSource: ``<uuid>_resize`` back, disk rolled back to the resize
       snapshot, old domain defined.
    4. ReleaseDestinationClaim: destination claim dropped, source usage
       back to the instance.
    5. PowerOnSource: on if it was ACTIVE, wait for RUNNING.
    P. after_source_runs.
    6. MarkReverted: old host, old flavor, old vm_state; ``reverted``.
    7. DeleteDestinationFiles: the point of no return, last.

    Requires ``migration_uuid`` in the store.
    """
    loaded = rf_plugins.load(plugins)

    def at(point):
        return rf_plugins.tasks_at(loaded, 'revert_resize', point)
    flow = linear_flow.Flow('revert_resize')
    flow.add(
        lifecycle.BeginRevert(),
        dest.DestroyDestination(),
        *at(rf_plugins.BEFORE_SOURCE_RESTORE),
        source.RestoreSource(),
        records.ReleaseDestinationClaim(),
        source.PowerOnSource(),
        *at(rf_plugins.AFTER_SOURCE_RUNS),
        records.MarkReverted(),
        dest.DeleteDestinationFiles(),
    )
    return flow
