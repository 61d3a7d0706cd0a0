"""An instance held while a plugin's device is attached or detached.

Attach and detach of a port or volume change the guest outside a flow.
They take the instance as a move does: in one transaction, a
compare-and-swap of ``task_state`` from None to theirs
(``attaching_volume``, ``detaching_volume``, ``attaching_interface``,
``detaching_interface``, as Nova's), with the instance action of the
request and its event started; they give it back at the end, also on
failure (:func:`held`). A move started in between finds the task state
and is refused (409), and an attach or detach started during a move is
refused the same way. An attach or detach killed midway leaves its task
state: running the same command again takes it over and finishes (as a
server delete killed midway is finished by running it again).

:func:`lock_instance` is the check the plugins' record changes make in
their own transactions (the instance's row held, no other task, a
resting vm_state, its host).
"""
import contextlib

import sqlalchemy as sa

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import models
from resize_flows import states


def lock_instance(session, instance_uuid, method, vm_states, host=None,
                  task_states=(None,) + states.DEVICE_TASK_STATES):
    """The instance's row, held (``SELECT ... FOR UPDATE``; SQLite's
    ``BEGIN IMMEDIATE`` serialises writers already): InstanceNotFound, or
    InstanceInvalidState unless its task_state is one of ``task_states``
    (none, or a device's being attached or detached), its vm_state one of
    ``vm_states`` and, when given, its host ``host``."""
    inst = session.scalars(db.for_update(
        sa.select(models.Instance).filter_by(uuid=instance_uuid),
        session)).first()
    if inst is None:
        raise exception.InstanceNotFound(instance_id=instance_uuid)
    for attr, value, allowed in (
            ('task_state', inst.task_state, task_states),
            ('vm_state', inst.vm_state, vm_states),
            ('host', inst.host, (host,) if host is not None else None)):
        if allowed is not None and value not in allowed:
            raise exception.InstanceInvalidState(
                method=method, instance_uuid=instance_uuid, attr=attr,
                state=value)
    return inst


def begin(ctx, instance_uuid, task_state, method, vm_states, host):
    """Take the instance for ``task_state`` (from None, or from the same
    task state left by a command killed midway) and start its action
    ``method`` with an event of that name, in one transaction."""
    with db.session_scope() as s:
        inst = lock_instance(s, instance_uuid, method, vm_states, host,
                             task_states=(None, task_state))
        inst.task_state = task_state
        act = models.InstanceAction(
            request_id=ctx.request_id, instance_uuid=instance_uuid,
            action=method, user_id=ctx.user_id, project_id=ctx.project_id)
        s.add(act)
        s.flush()
        s.add(models.InstanceActionEvent(action_id=act.id, event=method,
                                         host=host))
        return models.as_dict(inst)


def end(ctx, instance_uuid, task_state, method, error=None):
    """Give the instance back (its task_state None, if it is still
    ``task_state``) and finish the action and its event (``Success``, or
    ``Error`` with ``error``'s one line), in one transaction."""
    with db.session_scope() as s:
        s.execute(sa.update(models.Instance).where(
            models.Instance.uuid == instance_uuid,
            models.Instance.task_state == task_state).values(
                task_state=None, updated_at=models.utcnow()))
        act = s.scalars(
            sa.select(models.InstanceAction)
            .filter_by(instance_uuid=instance_uuid,
                       request_id=ctx.request_id, action=method)
            .order_by(models.InstanceAction.id.desc())).first()
        if act is None:
            return
        now = models.utcnow()
        message = None if error is None else str(error)[:255]
        act.finish_time, act.message = now, message
        for ev in act.events:
            if ev.finish_time is None:
                ev.finish_time = now
                ev.result = 'Success' if error is None else 'Error'


@contextlib.contextmanager
def held(ctx, instance_uuid, task_state, method, vm_states, host):
    """:func:`begin`, then :func:`end` when the block ends or fails
    (an ``Exception``); on anything else (the process is going: a
    signal, ``SystemExit``, a test's ``SimulatedCrash``) the task state
    stays, as after a kill, for the same command to finish."""
    begin(ctx, instance_uuid, task_state, method, vm_states, host)
    try:
        yield
    except Exception as exc:
        end(ctx, instance_uuid, task_state, method, error=exc)
        raise
    end(ctx, instance_uuid, task_state, method)
