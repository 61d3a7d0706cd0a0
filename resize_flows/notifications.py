"""Notifications of moves, as Nova's versioned instance notifications.

A flow's listener (:class:`NotificationListener`, attached by
``engine.run`` to every run, resume and rollback, so a flow resumed by
another process still notifies) emits, from the steps of the flow:

========================================  =================================
resize / migrate                          when
========================================  =================================
instance.resize_prep.start / .end         ClaimResources starts (once per
                                          host tried) / PrepareDestination
                                          done
instance.resize.start / .end              PowerOffSource starts / CopyDisk
                                          done
instance.resize_finish.start / .end       FinishMigration starts /
                                          MarkMigrationFinished done
instance.resize.error                     a step failed (priority ERROR,
                                          with the fault; a reschedule to an
                                          alternate host follows one)
instance.resize_confirm.start / .end      BeginConfirm starts / CleanupSource
                                          done
instance.resize_revert.start / .end       BeginRevert starts /
                                          DeleteDestinationFiles done
========================================  =================================

Delivery is at least once: a step that runs again after a crash notifies
again. Each notification is a dict: ``event_type``, ``priority``
(``INFO``/``ERROR``), ``publisher_id``, ``timestamp``, ``message_id`` and
``payload`` (instance uuid, name, project and user, operation, migration
uuid and type, flow and request ids, source and destination host, old and
new flavor (id, name, vcpus, memory_mb, root_gb, ephemeral_gb, swap_mb),
vm and task state; ``fault`` for an error).

Notifiers are plugins: classes in the ``resize_flows.notifiers`` entry
point group with a ``notify(notification)`` method, chosen by
``[notifications]/drivers`` (default ``log``). :func:`register` adds one in
this process without an entry point. A notifier that raises is logged and
skipped: it never breaks a flow.
"""
import datetime
import importlib.metadata
import logging
import socket
import threading
import uuid as uuidlib

from taskflow.listeners import base as listener_base
from taskflow import states as tf_states
from taskflow.types import failure as tf_failure

from resize_flows.conf import CONF
from resize_flows.persistence import repository

LOG = logging.getLogger(__name__)

ENTRY_POINT_GROUP = 'resize_flows.notifiers'
PUBLISHER_ID = 'resize-flows:%s' % socket.gethostname()

INFO = 'INFO'
ERROR = 'ERROR'

_MOVE = {
    ('ClaimResources', tf_states.RUNNING): 'instance.resize_prep.start',
    ('PrepareDestination', tf_states.SUCCESS): 'instance.resize_prep.end',
    ('PowerOffSource', tf_states.RUNNING): 'instance.resize.start',
    ('CopyDisk', tf_states.SUCCESS): 'instance.resize.end',
    ('FinishMigration', tf_states.RUNNING): 'instance.resize_finish.start',
    ('MarkMigrationFinished', tf_states.SUCCESS):
        'instance.resize_finish.end',
}
#: operation -> {(task name, task state): event type}
EVENTS = {
    'resize': _MOVE,
    'migrate': _MOVE,
    'confirm_resize': {
        ('BeginConfirm', tf_states.RUNNING): 'instance.resize_confirm.start',
        ('CleanupSource', tf_states.SUCCESS): 'instance.resize_confirm.end',
    },
    'revert_resize': {
        ('BeginRevert', tf_states.RUNNING): 'instance.resize_revert.start',
        ('DeleteDestinationFiles', tf_states.SUCCESS):
            'instance.resize_revert.end',
    },
}
#: operation -> event type of a failed step
ERROR_EVENTS = {'resize': 'instance.resize.error',
                'migrate': 'instance.resize.error'}


class LogNotifier:
    """The shipped notifier: one log line per notification (logger
    ``resize_flows.notifications``, INFO or ERROR)."""

    def notify(self, notification):
        level = (logging.ERROR if notification['priority'] == ERROR
                 else logging.INFO)
        payload = notification['payload']
        LOG.log(level, '%s instance=%s migration=%s %s -> %s request=%s%s',
                notification['event_type'], payload.get('instance_uuid'),
                payload.get('migration_uuid'), payload.get('source_host'),
                payload.get('dest_host'), payload.get('request_id'),
                (' fault=%s' % payload['fault']['message']
                 if payload.get('fault') else ''))


_LOCK = threading.Lock()
_REGISTERED = {}        # name -> notifier, registered in this process
_LOADED = {}            # name -> notifier, loaded from entry points


def register(name, notifier):
    """Make ``notifier`` (an object with ``notify(notification)``)
    available as ``name`` in ``[notifications]/drivers`` without an entry
    point (an embedder's own, or a test's). Wins over an entry point of
    the same name."""
    with _LOCK:
        _REGISTERED[name] = notifier


def unregister(name):
    with _LOCK:
        _REGISTERED.pop(name, None)


def reset():
    """Forget loaded plugins (they are loaded again on the next use)."""
    with _LOCK:
        _LOADED.clear()


def _load(name):
    eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP,
                                          name=name)
    for ep in eps:
        return ep.load()()
    raise LookupError('no notifier %r in entry point group %s' % (
        name, ENTRY_POINT_GROUP))


def get_notifiers():
    """[(name, notifier)] of ``[notifications]/drivers``; a plugin that
    cannot be loaded is logged and left out."""
    out = []
    for name in CONF.notifications.drivers:
        with _LOCK:
            notifier = _REGISTERED.get(name) or _LOADED.get(name)
        if notifier is None:
            try:
                notifier = _load(name)
            except Exception:
                LOG.exception('cannot load notifier %s', name)
                continue
            with _LOCK:
                _LOADED[name] = notifier
        out.append((name, notifier))
    return out


def notify(event_type, payload, priority=INFO):
    """Send one notification to every configured notifier. Never raises."""
    notification = {
        'event_type': event_type, 'priority': priority,
        'publisher_id': PUBLISHER_ID,
        'timestamp': datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec='microseconds'),
        'message_id': str(uuidlib.uuid4()),
        'payload': payload,
    }
    try:
        notifiers = get_notifiers()
    except Exception:
        LOG.exception('cannot get the notifiers for %s', event_type)
        return notification
    for name, notifier in notifiers:
        try:
            notifier.notify(notification)
        except Exception:
            LOG.exception('notifier %s failed on %s', name, event_type)
    return notification


def _flavor(flavor_id):
    if flavor_id is None:
        return None
    f = repository.flavor_get(flavor_id)
    return {k: f[k] for k in ('id', 'name', 'vcpus', 'memory_mb',
                              'root_gb', 'ephemeral_gb', 'swap_mb')}


def move_payload(meta, dest_host=None):
    """The payload of a move's notification, read from the records."""
    mig = repository.migration_get(meta['migration_uuid'])
    inst = repository.instance_get(mig['instance_uuid'])
    return {
        'instance_uuid': inst['uuid'], 'instance_name': inst['name'],
        'project_id': inst['project_id'], 'user_id': inst['user_id'],
        'operation': meta.get('operation'),
        'migration_uuid': mig['uuid'],
        'migration_type': mig['migration_type'],
        'flow_id': mig['flow_id'], 'request_id': meta.get('request_id'),
        'source_host': mig['source_compute'],
        'dest_host': dest_host or mig['dest_compute'],
        'old_flavor': _flavor(mig['old_flavor_id']),
        'new_flavor': _flavor(mig['new_flavor_id']),
        'vm_state': inst['vm_state'], 'task_state': inst['task_state'],
    }


def _fault(result):
    if isinstance(result, tf_failure.Failure):
        names = list(result)            # the exception's class names
        return {'exception': names[0] if names else None,
                'message': result.exception_str}
    return None


class NotificationListener(listener_base.Listener):
    """Emits a flow's notifications from its tasks' transitions (see the
    module's table). Never breaks the flow it listens to."""

    def __init__(self, engine, meta):
        super().__init__(engine, task_listen_for=(
            tf_states.RUNNING, tf_states.SUCCESS, tf_states.FAILURE))
        self._meta = meta
        self._events = EVENTS.get(meta.get('operation'), {})
        self._error_event = ERROR_EVENTS.get(meta.get('operation'))

    def _dest_host(self):
        try:
            return self._engine.storage.fetch('dest_host')
        except Exception:
            return None

    def _task_receiver(self, state, details):
        name = details['task_name']
        if state == tf_states.FAILURE:
            event_type, priority = self._error_event, ERROR
        else:
            event_type, priority = self._events.get((name, state)), INFO
        if event_type is None or not self._meta.get('migration_uuid'):
            return
        try:
            payload = move_payload(self._meta, self._dest_host())
            if priority == ERROR:
                payload['fault'] = _fault(details.get('result'))
                payload['failed_step'] = name
            notify(event_type, payload, priority)
        except Exception:
            LOG.exception('could not notify %s of %s', event_type, name)
