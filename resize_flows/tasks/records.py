"""Tasks that act on the records: states, destination choice, capacity.

(The first task of each flow, which begins its operation in the records,
is in :mod:`resize_flows.tasks.lifecycle`.) Each reads what it needs from
the database by the migration's uuid, so its arguments stay small and
every re-run sees the current truth.
"""
from taskflow import retry

from resize_flows.conf import CONF
from resize_flows.persistence import repository
from resize_flows import scheduler
from resize_flows import states
from resize_flows.tasks import base


# -- resize / cold migrate ---------------------------------------------------

class SelectDestination(base.ResizeFlowsTask):
    """Choose the destination hosts (Nova's select_destinations).

    A host named by the request (the migration's ``dest_compute`` when the
    move starts) is the only one: no alternates. Otherwise the scheduler's
    enabled hosts with room for the new flavor, best first, at most
    ``[scheduler]/max_attempts`` of them: the first and its alternates.
    Never the source for a cold migration; for a resize only with
    ``[compute]/allow_resize_to_same_host``. Provides ``alternates``.

    Reversion strategy: nothing was claimed or changed.
    """
    default_provides = 'alternates'

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        if mig['dest_compute']:
            return [mig['dest_compute']]
        flavor = repository.flavor_get(mig['new_flavor_id'])
        allow_same = (mig['migration_type'] == states.MIGRATION_TYPE_RESIZE
                      and CONF.compute.allow_resize_to_same_host)
        hosts = scheduler.select_destinations(
            repository.flavor_resources(flavor), mig['source_compute'],
            allow_same_host=allow_same)
        return hosts[:CONF.scheduler.max_attempts]


def _host_list(alternates):
    # A flow stored before alternates existed saved one host name here.
    return [alternates] if isinstance(alternates, str) else list(alternates)


class TryDestinations(retry.ForEachBase):
    """Retry controller of the destination's claim and preparation: the
    next host of ``alternates`` not tried yet (Nova's reschedule to an
    alternate host). Provides ``dest_host``.

    When ClaimResources or PrepareDestination fails, TaskFlow undoes both
    (the claim on the failed host is released) and asks this controller:
    another host is left, so they run again on it; none is left, so the
    failure goes on to undo the whole flow. Its history (each host tried
    and why it failed) is kept in the flow log, so a resumed flow goes on
    with the host it was on and never retries a host it gave up.

    Reversion strategy: nothing to undo; it only chooses (the claim is
    ClaimResources', undone by its own revert).
    """
    default_provides = 'dest_host'

    def __init__(self, name=None, **kwargs):
        # REVERT_ALL once no host is left: a plain REVERT would undo only
        # the subflow and end the flow REVERTED with BeginMigration and
        # SelectDestination never undone (nothing outside retries).
        kwargs.setdefault('revert_all', True)
        super().__init__(name=name or type(self).__name__, **kwargs)

    def execute(self, history, alternates):
        return self._get_next_value(_host_list(alternates), history)

    def on_failure(self, history, alternates):
        return self._on_failure(_host_list(alternates), history)

    def revert(self, history, alternates, **kwargs):
        """Nothing to undo: the controller only chooses."""


class ClaimResources(base.ResizeFlowsTask):
    """Claim the destination's capacity, Nova's way, in one transaction:
    the instance's allocation on the source is handed to the migration,
    the instance claims the new flavor on the destination, and the
    migration's ``dest_compute`` names that host.

    Reversion strategy: drop the destination claim and hand the source
    allocation back to the instance, only if the claim was made (a failed
    claim wrote nothing); ``dest_compute`` stays as the record of the last
    host tried.
    """

    def execute(self, migration_uuid, dest_host):
        mig = repository.migration_get(migration_uuid)
        flavor = repository.flavor_get(mig['new_flavor_id'])
        repository.claim_for_move(
            mig['instance_uuid'], migration_uuid, mig['source_compute'],
            dest_host, repository.flavor_resources(flavor))

    def revert(self, migration_uuid, dest_host, **kwargs):
        mig = repository.migration_get(migration_uuid)
        repository.unclaim_for_move(mig['instance_uuid'], migration_uuid,
                                    mig['source_compute'], dest_host)


class MarkMigrationFinished(base.ResizeFlowsTask):
    """The move is done: the instance lives on the destination with the new
    flavor, vm_state RESIZED, awaiting confirm or revert; the migration is
    ``finished``.

    Reversion strategy: the instance points at its source host and old
    flavor again, its task back to ``resize_finish``; the migration back to
    ``post-migrating``.
    """

    def execute(self, migration_uuid, dest_host):
        mig = repository.migration_get(migration_uuid)
        repository.instance_update(mig['instance_uuid'], {
            'host': dest_host, 'flavor_id': mig['new_flavor_id'],
            'old_flavor_id': mig['old_flavor_id'],
            'new_flavor_id': mig['new_flavor_id'],
            'vm_state': states.RESIZED, 'task_state': None,
            'power_state': base.power_state(dest_host, mig['instance_uuid'])})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_FINISHED})

    def revert(self, migration_uuid, dest_host, result, **kwargs):
        mig = repository.migration_get(migration_uuid)
        repository.instance_update(mig['instance_uuid'], {
            'host': mig['source_compute'], 'flavor_id': mig['old_flavor_id'],
            'vm_state': mig['old_vm_state'],
            'task_state': states.RESIZE_FINISH})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_POST_MIGRATING})


# -- confirm -----------------------------------------------------------------

class ReleaseSourceClaim(base.ResizeFlowsTask):
    """Drop the migration's allocation on the source host (the old flavor's
    usage that was kept there for a revert).

    Reversion strategy: claim it again for the migration (this fails, and
    says so, if the capacity was taken meanwhile).
    """

    def execute(self, migration_uuid):
        repository.release(migration_uuid)

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        old = repository.flavor_get(mig['old_flavor_id'])
        repository.claim(migration_uuid, repository.CONSUMER_MIGRATION,
                         mig['source_compute'],
                         repository.flavor_resources(old))


class MarkConfirmed(base.ResizeFlowsTask):
    """The instance rests on the destination: vm_state ACTIVE or STOPPED as
    its guest is, no old/new flavor; the migration is ``confirmed``.

    Reversion strategy: back to RESIZED with its old/new flavor, task
    ``resize_confirming``, migration ``confirming``.
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        power = base.power_state(mig['dest_compute'], mig['instance_uuid'])
        repository.instance_update(mig['instance_uuid'], {
            'vm_state': states.vm_state_for_power(power),
            'power_state': power, 'task_state': None,
            'old_flavor_id': None, 'new_flavor_id': None})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_CONFIRMED})

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        repository.instance_update(mig['instance_uuid'], {
            'vm_state': states.RESIZED,
            'task_state': states.RESIZE_CONFIRMING,
            'old_flavor_id': mig['old_flavor_id'],
            'new_flavor_id': mig['new_flavor_id']})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_CONFIRMING})


# -- revert ------------------------------------------------------------------

class ReleaseDestinationClaim(base.ResizeFlowsTask):
    """Drop the instance's claim on the destination and hand the source
    allocation, held by the migration, back to the instance.

    Reversion strategy: redo the move's claim in one transaction (fails,
    and says so, if the destination's capacity was taken meanwhile).
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        repository.unclaim_for_move(mig['instance_uuid'], migration_uuid,
                                    mig['source_compute'],
                                    mig['dest_compute'])

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        new = repository.flavor_get(mig['new_flavor_id'])
        repository.claim_for_move(
            mig['instance_uuid'], migration_uuid, mig['source_compute'],
            mig['dest_compute'], repository.flavor_resources(new))


class MarkReverted(base.ResizeFlowsTask):
    """The instance is back on its source host with its old flavor and old
    vm_state; the migration is ``reverted``.

    Reversion strategy: back to RESIZED on the destination with the new
    flavor, task ``resize_reverting``, migration ``reverting``.
    """

    def execute(self, migration_uuid):
        mig = repository.migration_get(migration_uuid)
        source = mig['source_compute']
        repository.instance_update(mig['instance_uuid'], {
            'host': source, 'flavor_id': mig['old_flavor_id'],
            'old_flavor_id': None, 'new_flavor_id': None,
            'vm_state': mig['old_vm_state'], 'task_state': None,
            'power_state': base.power_state(source, mig['instance_uuid'])})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_REVERTED})

    def revert(self, migration_uuid, **kwargs):
        mig = repository.migration_get(migration_uuid)
        repository.instance_update(mig['instance_uuid'], {
            'host': mig['dest_compute'], 'flavor_id': mig['new_flavor_id'],
            'old_flavor_id': mig['old_flavor_id'],
            'new_flavor_id': mig['new_flavor_id'],
            'vm_state': states.RESIZED,
            'task_state': states.RESIZE_REVERTING})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_REVERTING})
