"""An instance's actions and their events, as Nova records them.

An action is created with the operation it records, in the transaction
that starts it (:func:`~resize_flows.persistence.repository.start_move`,
``start_resolution``); here it is read, its events are started and
finished by the flow's listener, and it is finished with its flow.
"""
import sqlalchemy as sa

from resize_flows.persistence import db
from resize_flows.persistence import models


def _action(session, instance_uuid, request_id):
    """The newest action of this request on this instance."""
    return session.scalars(
        sa.select(models.InstanceAction)
        .filter_by(instance_uuid=instance_uuid, request_id=request_id)
        .order_by(models.InstanceAction.id.desc())).first()


def action_get(instance_uuid, request_id):
    with db.session_scope(read_only=True) as s:
        act = _action(s, instance_uuid, request_id)
        return models.as_dict(act)


def action_list(instance_uuid):
    """Actions of an instance, newest first, each with its 'events'."""
    with db.session_scope(read_only=True) as s:
        out = []
        for act in s.scalars(sa.select(models.InstanceAction)
                             .filter_by(instance_uuid=instance_uuid)
                             .order_by(models.InstanceAction.id.desc())):
            entry = models.as_dict(act)
            entry['events'] = [models.as_dict(e) for e in act.events]
            out.append(entry)
        return out


def action_finish(instance_uuid, request_id, message=None):
    with db.session_scope() as s:
        act = _action(s, instance_uuid, request_id)
        if act is not None:
            act.finish_time = models.utcnow()
            act.message = message


def event_start(instance_uuid, request_id, event, host=None):
    with db.session_scope() as s:
        act = _action(s, instance_uuid, request_id)
        if act is None:
            return
        s.add(models.InstanceActionEvent(action_id=act.id, event=event,
                                         host=host))


def event_finish(instance_uuid, request_id, event, result, traceback=None):
    with db.session_scope() as s:
        act = _action(s, instance_uuid, request_id)
        if act is None:
            return
        ev = s.scalars(
            sa.select(models.InstanceActionEvent)
            .where(models.InstanceActionEvent.action_id == act.id,
                   models.InstanceActionEvent.event == event,
                   models.InstanceActionEvent.finish_time.is_(None))
            .order_by(models.InstanceActionEvent.id.desc())).first()
        if ev is None:
            return
        ev.finish_time = models.utcnow()
        ev.result = result
        ev.traceback = traceback


def action_start(instance_uuid, request_id, action, user_id=None,
                 project_id=None):
    """Record an action that no flow starts in the records (an operator's
    command on a move, e.g. ``abort_migration``)."""
    with db.session_scope() as s:
        s.add(models.InstanceAction(
            request_id=request_id, instance_uuid=instance_uuid,
            action=action, user_id=user_id, project_id=project_id))
