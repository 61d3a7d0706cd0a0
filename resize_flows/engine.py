"""Create, load and run flows with the flow log.

A flow is created in two steps so that no operation ever exists without its
flow: :func:`create` stores the flow (factory name and arguments, the store,
and meta naming the operation, instance and migration) under a flow id
chosen up front; the API then starts the operation in the records with that
id; :func:`run` runs it. If the records refuse the operation, the API calls
:func:`discard` and the stored flow goes.

Each flow has a logbook of its own (named after the operation and the
instance), so loading one flow never reads another's log.
"""
import contextlib
import logging
import uuid as uuidlib

from oslo_utils import importutils
import sqlalchemy as sa
from taskflow import engines
from taskflow.listeners import base as listener_base
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states
from taskflow.types import failure as tf_failure

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import repository

LOG = logging.getLogger(__name__)

#: operation name -> (flow factory, its keyword arguments)
OPERATIONS = {
    'resize': ('resize_flows.flows.resize.get_resize_flow',
               {'operation': 'resize'}),
    'migrate': ('resize_flows.flows.resize.get_resize_flow',
                {'operation': 'migrate'}),
    'confirm_resize': ('resize_flows.flows.confirm.get_confirm_resize_flow',
                       {}),
    'revert_resize': ('resize_flows.flows.revert.get_revert_resize_flow',
                      {}),
}

ENGINE_KIND = 'serial'


class FlowHandle:
    """A stored flow and, once loaded, its engine."""

    def __init__(self, flow_id, engine, meta):
        self.flow_id = flow_id
        self.engine = engine
        self.meta = meta

    @property
    def operation(self):
        return self.meta.get('operation')


def _factory_meta(factory_name, factory_kwargs):
    return {'name': factory_name, 'args': [], 'kwargs': factory_kwargs}


def create(operation, store, instance_uuid, migration_uuid, flow_id=None):
    """Store a new flow for ``operation`` and load it into an engine.

    ``store`` must be JSON-serialisable; it is saved with the flow.
    """
    factory_name, factory_kwargs = OPERATIONS[operation]
    # Built the way a resumed flow is rebuilt: from its factory's name.
    flow = importutils.import_class(factory_name)(**factory_kwargs)
    flow_id = flow_id or str(uuidlib.uuid4())
    meta = {
        'factory': _factory_meta(factory_name, factory_kwargs),
        'operation': operation,
        'instance_uuid': instance_uuid,
        'migration_uuid': migration_uuid,
        'request_id': store.get('request_id'),
    }
    book = tf_models.LogBook('%s-%s' % (operation, instance_uuid))
    book.meta = {'operation': operation, 'instance_uuid': instance_uuid}
    detail = tf_models.FlowDetail(flow.name, uuid=flow_id)
    detail.meta = meta
    book.add(detail)
    backend = flowlog.get_backend()
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    engine = engines.load(flow, store=store, flow_detail=detail, book=book,
                          backend=backend, engine=ENGINE_KIND)
    return FlowHandle(flow_id, engine, meta)


def _book_uuid(flow_id):
    """The logbook holding a flow (one indexed read, not a scan)."""
    table = sa.table('flowdetails', sa.column('uuid'),
                     sa.column('parent_uuid'))
    with db.get_engine().connect() as conn:
        return conn.execute(sa.select(table.c.parent_uuid)
                            .where(table.c.uuid == flow_id)).scalar()


def find_detail(flow_id):
    """(logbook, flow detail) of a stored flow."""
    book_uuid = _book_uuid(flow_id)
    if book_uuid is None:
        raise exception.FlowNotFound(flow_id=flow_id)
    backend = flowlog.get_backend()
    with contextlib.closing(backend.get_connection()) as conn:
        book = conn.get_logbook(book_uuid)
    detail = book.find(flow_id)
    if detail is None:
        raise exception.FlowNotFound(flow_id=flow_id)
    return book, detail


def load(flow_id):
    """Load a stored flow into an engine, rebuilt from the flow log alone."""
    book, detail = find_detail(flow_id)
    try:
        flow = engines.helpers.flow_from_detail(detail)
    except (ImportError, ValueError) as e:
        raise exception.FlowFactoryInvalid(flow_id=flow_id, reason=str(e))
    engine = engines.load(flow, flow_detail=detail, book=book,
                          backend=flowlog.get_backend(), engine=ENGINE_KIND)
    return FlowHandle(flow_id, engine, dict(detail.meta or {}))


def discard(flow_id):
    """Delete a stored flow that never ran (its operation was refused)."""
    book_uuid = _book_uuid(flow_id)
    if book_uuid is None:
        return
    backend = flowlog.get_backend()
    with contextlib.closing(backend.get_connection()) as conn:
        conn.destroy_logbook(book_uuid)


def run(handle, listeners=()):
    """Run a loaded flow to its end with the action-event listener and any
    extra listener factories (each called with the engine).

    Returns the flow's final state. When a task failed and the flow was
    undone, the task's exception is raised again, as the caller of a plain
    function would see it.
    """
    engine = handle.engine
    active = [ActionEventListener(engine, handle.meta)]
    active.extend(factory(engine) for factory in listeners)
    with contextlib.ExitStack() as stack:
        for listener in active:
            stack.enter_context(listener)
        try:
            engine.run()
        finally:
            _finish_action(handle, engine.storage.get_flow_state())
    return engine.storage.get_flow_state()


def _finish_action(handle, flow_state):
    meta = handle.meta
    if not meta.get('request_id'):
        return
    repository.action_finish(meta['instance_uuid'], meta['request_id'],
                             message=str(flow_state))


class ActionEventListener(listener_base.Listener):
    """Records an instance action event per task, as Nova records one per
    compute step: start and finish time, result, and the traceback of a
    failure. An undo step is recorded as ``revert <task>``."""

    def __init__(self, engine, meta):
        super().__init__(engine, task_listen_for=(
            tf_states.RUNNING, tf_states.SUCCESS, tf_states.FAILURE,
            tf_states.REVERTING, tf_states.REVERTED,
            tf_states.REVERT_FAILURE))
        self._instance = meta.get('instance_uuid')
        self._request = meta.get('request_id')

    def _task_receiver(self, state, details):
        if not self._request:
            return
        name = details['task_name']
        try:
            if state == tf_states.RUNNING:
                repository.event_start(self._instance, self._request, name)
            elif state == tf_states.SUCCESS:
                repository.event_finish(self._instance, self._request, name,
                                        'Success')
            elif state == tf_states.FAILURE:
                repository.event_finish(
                    self._instance, self._request, name, 'Error',
                    _traceback(details.get('result')))
            elif state == tf_states.REVERTING:
                repository.event_start(self._instance, self._request,
                                       'revert ' + name)
            else:
                result = ('Success' if state == tf_states.REVERTED
                          else 'Error')
                repository.event_finish(
                    self._instance, self._request, 'revert ' + name, result,
                    _traceback(details.get('result')))
        except Exception:
            # An event record must never break the flow it describes.
            LOG.exception('could not record event %s of %s', state, name)


def _traceback(result):
    if isinstance(result, tf_failure.Failure):
        return result.pformat(traceback=True)
    return None
