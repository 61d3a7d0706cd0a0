"""The lifecycle tasks: the first task of each flow, which begins its
operation in the records.

The API has already started the operation (instance and migration swapped
into their new states, naming the flow) in one transaction before it
stored the flow; the lifecycle task checks that start and, when the flow
is undone, its revert undoes it, last. Each has ``lifecycle = True``
(see :class:`~resize_flows.tasks.base.ResizeFlowsTask`): the engine fails
it to cancel a flow that never ran.
"""
from resize_flows import exception
from resize_flows.persistence import flowaborts
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.tasks import base


def _started_by(migration_uuid, flow_id):
    """The migration if the records started it for the flow ``flow_id``,
    else None: no such migration (the records never started the move) or
    another flow's (the records never started this confirm or revert,
    and a later operation owns the migration). A flow stored by older
    code without its id in its store (``flow_id`` None) is taken as
    the owner."""
    try:
        mig = repository.migration_get(migration_uuid)
    except exception.MigrationNotFound:
        return None
    if flow_id is not None and mig['flow_id'] != flow_id:
        return None
    return mig


def _check_started(migration_uuid, flow_id):
    mig = _started_by(migration_uuid, flow_id)
    if mig is not None:
        return mig
    try:
        owner = repository.migration_get(migration_uuid)['flow_id']
    except exception.MigrationNotFound:
        reason = 'migration %s does not exist' % migration_uuid
    else:
        reason = 'migration %s belongs to flow %s' % (migration_uuid, owner)
    raise exception.FlowNotStarted(flow_id=flow_id, reason=reason)


class BeginMigration(base.ResizeFlowsTask):
    """First task of a move: check the move is the one the API started.

    The API has already swapped the instance into ``resize_prep`` and
    created the migration (``pre-migrating``, naming this flow) in one
    transaction; a flow whose process died before that finds no migration
    and fails (:class:`~resize_flows.exception.FlowNotStarted`).

    Reversion strategy: this is the lifecycle task, so its revert runs last
    when the flow is undone: the migration becomes ``error`` (``cancelled``
    when an operator aborted the move) and the instance returns to its old
    vm_state with no task under way and no old/new flavor, its power state
    read back from its host. Only a migration this flow started: with
    none, nothing is undone.
    """

    lifecycle = True

    def execute(self, migration_uuid, flow_id=None):
        mig = _check_started(migration_uuid, flow_id)
        if mig['status'] in states.MIGRATION_TERMINAL:
            raise exception.UnexpectedMigrationStatus(
                migration_uuid=migration_uuid, expected='not terminal',
                actual=mig['status'])

    def revert(self, migration_uuid, flow_id=None, **kwargs):
        mig = _started_by(migration_uuid, flow_id)
        if mig is None:
            return      # the records never started this flow
        source = mig['source_compute']
        repository.instance_update(mig['instance_uuid'], {
            'task_state': None, 'vm_state': mig['old_vm_state'],
            'host': source, 'flavor_id': mig['old_flavor_id'],
            'old_flavor_id': None, 'new_flavor_id': None,
            'power_state': base.power_state(source, mig['instance_uuid'])})
        aborted = flowaborts.abort_get(mig['flow_id']) is not None
        repository.migration_update(migration_uuid, {
            'status': (states.MIGRATION_CANCELLED if aborted
                       else states.MIGRATION_ERROR)})


class BeginConfirm(base.ResizeFlowsTask):
    """First task of a confirm: the API has swapped the instance into
    ``resize_confirming`` and the migration into ``confirming``, naming
    this flow. A flow whose process died before that finds the migration
    not named after it (still ``finished``, or taken by a later confirm
    or revert) and fails (:class:`~resize_flows.exception.FlowNotStarted`)
    without touching it.

    Reversion strategy: a confirm undone before its point of no return
    leaves the move as it was: migration ``finished``, instance RESIZED
    with no task under way, ready to be confirmed or reverted again. Only
    while the migration is this flow's and still ``confirming``: a
    migration another flow owns, or one already back to ``finished``, is
    left alone.
    """

    lifecycle = True

    #: The migration's status while this flow owns it.
    status = states.MIGRATION_CONFIRMING

    def execute(self, migration_uuid, flow_id=None):
        mig = _check_started(migration_uuid, flow_id)
        if mig['status'] != self.status:
            raise exception.UnexpectedMigrationStatus(
                migration_uuid=migration_uuid, expected=self.status,
                actual=mig['status'])

    def revert(self, migration_uuid, flow_id=None, **kwargs):
        mig = _started_by(migration_uuid, flow_id)
        if mig is None or mig['status'] != self.status:
            return      # never started by this flow, or undone already
        repository.instance_update(mig['instance_uuid'], {
            'task_state': None, 'vm_state': states.RESIZED})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_FINISHED})


class BeginRevert(BeginConfirm):
    """First task of a revert: the API has swapped the instance into
    ``resize_reverting`` and the migration into ``reverting``, naming this
    flow (checked as a confirm's).

    Reversion strategy: as a confirm's: back to RESIZED and ``finished``,
    only while the migration is this flow's and ``reverting``.
    """

    status = states.MIGRATION_REVERTING
