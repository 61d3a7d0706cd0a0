"""Records that operators' commands write outside any flow: an abandoned
flow (``flow abandon``) and the repairs of ``audit --repair`` (healed
allocations, a recorded power state), each in one transaction with the
instance action that tells it (Nova's reset-state and heal_allocations
leave such traces too).
"""
import sqlalchemy as sa

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import models
from resize_flows import states
from resize_flows import timeutils

ABANDONS = models.FlowAbandon.__table__


def _record_action(session, instance_uuid, action, request_id, user_id,
                   project_id, message, events):
    """An instance action, finished, with ``events`` [(event, host)]
    finished with Success."""
    now = models.utcnow()
    act = models.InstanceAction(
        request_id=request_id, instance_uuid=instance_uuid, action=action,
        user_id=user_id, project_id=project_id, message=message,
        start_time=now, finish_time=now)
    session.add(act)
    session.flush()
    for event, host in events:
        session.add(models.InstanceActionEvent(
            action_id=act.id, event=event, host=host, start_time=now,
            finish_time=now, result='Success'))


def abandon_get(flow_id):
    """{'flow_id', 'reason', 'user_id', 'project_id', 'abandoned_at'} of
    an abandoned flow, or None."""
    with db.session_scope(read_only=True) as s:
        return models.as_dict(s.get(models.FlowAbandon, flow_id))


def abandon(flow_id, reason, instance_uuid, migration_uuid, release_hosts,
            request_id, user_id, project_id):
    """Record in one transaction that a flow is abandoned: the flow's
    abandon row; its instance (if it still exists) in vm_state ``error``
    with no task_state (Nova's reset-state); its migration (if any) in
    ``error``; the allocations of both on ``release_hosts`` (the hosts
    that do not answer) deleted; an instance action ``abandon`` with the
    reason and one event per change. Raises FlowStateConflict when the
    flow was abandoned already (another process first)."""
    with db.session_scope() as s:
        if s.get(models.FlowAbandon, flow_id) is not None:
            raise exception.FlowStateConflict(
                verb='abandon', flow_id=flow_id,
                reason='it is abandoned already')
        s.add(models.FlowAbandon(flow_id=flow_id, reason=reason,
                                 user_id=user_id, project_id=project_id))
        events = [('abandon_flow', None)]
        inst = models.Instance.__table__
        found = instance_uuid is not None and s.execute(
            inst.update().where(inst.c.uuid == instance_uuid).values(
                vm_state=states.ERROR, task_state=None,
                updated_at=models.utcnow())).rowcount == 1
        if found:
            events.append(('reset_state', None))
        if migration_uuid is not None:
            mig = models.Migration.__table__
            if s.execute(mig.update().where(
                    mig.c.uuid == migration_uuid).values(
                        status=states.MIGRATION_ERROR,
                        updated_at=models.utcnow())).rowcount:
                events.append(('migration_error', None))
        consumers = [c for c in (instance_uuid, migration_uuid) if c]
        for host in sorted(release_hosts):
            host_id = s.scalars(sa.select(models.Host.id).filter_by(
                name=host)).first()
            if host_id is None or not consumers:
                continue
            gone = s.execute(sa.delete(models.Allocation).where(
                models.Allocation.consumer_uuid.in_(consumers),
                models.Allocation.host_id == host_id)).rowcount
            if gone:
                events.append(('release_allocations', host))
        if found:
            _record_action(s, instance_uuid, 'abandon', request_id,
                           user_id, project_id, reason, events)


def abandoned_flows():
    """{flow_id: abandon row} of every abandoned flow."""
    with db.session_scope(read_only=True) as s:
        return {a.flow_id: models.as_dict(a)
                for a in s.scalars(sa.select(models.FlowAbandon))}


def set_allocations(consumer_uuid, consumer_type, want, instance_uuid,
                    request_id, user_id, project_id):
    """Make a consumer's allocations exactly ``want`` [(host, vcpus,
    memory_mb, disk_gb)] (heal_allocations); recorded as an instance
    action ``audit_repair`` of ``instance_uuid`` when it is given."""
    with db.session_scope() as s:
        hosts = {h.name: h.id for h in s.scalars(sa.select(models.Host))}
        s.execute(sa.delete(models.Allocation).where(
            models.Allocation.consumer_uuid == consumer_uuid))
        for host, vcpus, memory_mb, disk_gb in want:
            s.add(models.Allocation(
                consumer_uuid=consumer_uuid, consumer_type=consumer_type,
                host_id=hosts[host], vcpus=vcpus, memory_mb=memory_mb,
                disk_gb=disk_gb))
        if instance_uuid is not None:
            _record_action(s, instance_uuid, 'audit_repair', request_id,
                           user_id, project_id,
                           'allocations of %s set to %s' % (
                               consumer_uuid, want)[:255],
                           [('heal_allocations', None)])


def set_power_state(instance_uuid, power_state, expected, host, request_id,
                    user_id, project_id):
    """Record the power state a host reports for an instance, only if the
    records still say ``expected`` and no task is under way (else
    nothing, returns False); with an instance action ``audit_repair``."""
    with db.session_scope() as s:
        inst = models.Instance.__table__
        done = s.execute(inst.update().where(
            inst.c.uuid == instance_uuid, inst.c.power_state == expected,
            inst.c.task_state.is_(None)).values(
                power_state=power_state,
                updated_at=models.utcnow())).rowcount == 1
        if done:
            _record_action(s, instance_uuid, 'audit_repair', request_id,
                           user_id, project_id,
                           'power state %s recorded (was %s) at %s' % (
                               power_state, expected,
                               timeutils.iso(models.utcnow())),
                           [('sync_power_state', host)])
        return done


def record_repair(instance_uuid, event, host, message, request_id, user_id,
                  project_id):
    """An instance action ``audit_repair`` for a repair on the hosts (a
    directory of an ended move removed)."""
    with db.session_scope() as s:
        _record_action(s, instance_uuid, 'audit_repair', request_id,
                       user_id, project_id, message[:255], [(event, host)])
