"""A flow's lifecycle with the flow log: create, load, run, discard.

A flow is created in two steps so that no operation ever exists without its
flow: :func:`create` takes the flow's lease and stores the flow (factory
name and arguments, the store, and meta naming the operation, instance and
migration) under a flow id chosen up front; the API then starts the
operation in the records with that id; :func:`run` runs it. If the records
refuse the operation, the API calls :func:`discard` and the stored flow
goes. :func:`load` rebuilds a stored flow from the flow log alone.

The process that holds a flow renews its lease while it works on it and
releases it when done (``leases.py``). Resuming and rolling back a flow
another process left are ``recovery.py``'s; what the flow log says about
flows (list, show, status) is ``flowstatus.py``'s.

Each flow has a logbook of its own (named after the operation and the
instance), so loading one flow never reads another's log.
"""
import contextlib
import logging
import uuid as uuidlib

from oslo_utils import importutils
from taskflow import engines
from taskflow import exceptions as tf_exceptions
from taskflow.persistence import models as tf_models

from resize_flows import conf as rf_conf
from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import flows as rf_flows
from resize_flows import leases
from resize_flows import listeners as rf_listeners
from resize_flows import notifications
from resize_flows.persistence import flowlog
from resize_flows.persistence import instance_actions
from resize_flows import plugins as rf_plugins
from resize_flows.testing import faults

LOG = logging.getLogger(__name__)

ENGINE_KIND = 'serial'

#: The name of TaskFlow's atom that holds a flow's store.
INJECTOR = '_TaskFlow_INJECTOR'


class FlowHandle:
    """A stored flow, its engine, and this process's lease on it."""

    def __init__(self, flow_id, flow, engine, meta, lease):
        self.flow_id = flow_id
        self.flow = flow
        self.engine = engine
        self.meta = meta
        self.lease = lease

    @property
    def operation(self):
        return self.meta.get('operation')

    def close(self):
        if self.lease is not None:
            self.lease.release()


def _factory_meta(factory_name, factory_kwargs):
    return {'name': factory_name, 'args': [], 'kwargs': factory_kwargs}


def create(operation, store, instance_uuid, migration_uuid, flow_id=None,
           project_id=None):
    """Lease and store a new flow for ``operation``; load it into an engine.

    ``store`` must be JSON-serialisable; it is saved with the flow.
    ``project_id`` is the project of the instance, the target of the flow
    rules (kept with the flow when the instance is deleted).
    The configuration is checked first: an option that is not valid stops
    the operation before anything is stored. The flow is built with the
    plugins ``[DEFAULT]/plugins`` enables, and records them.
    """
    rf_conf.validate(CONF)
    kind = rf_flows.OPERATIONS[operation]
    # The plugins enabled now build it, and build it again on resume.
    factory_name = kind.factory
    factory_kwargs = dict(kind.factory_kwargs, plugins=rf_plugins.enabled())
    # Built the way a resumed flow is rebuilt: from its factory's name.
    flow = importutils.import_class(factory_name)(**factory_kwargs)
    flow_id = flow_id or str(uuidlib.uuid4())
    # The flow's own id, for its first task to check that the records
    # started this flow (see tasks/records.py).
    store = dict(store, flow_id=flow_id)
    meta = {
        'factory': _factory_meta(factory_name, factory_kwargs),
        'operation': operation,
        'instance_uuid': instance_uuid,
        'migration_uuid': migration_uuid,
        'request_id': store.get('request_id'),
        'project_id': project_id,
    }
    lease = leases.Lease(flow_id).acquire()
    try:
        book = tf_models.LogBook('%s-%s' % (operation, instance_uuid))
        book.meta = {'operation': operation, 'instance_uuid': instance_uuid}
        detail = tf_models.FlowDetail(flow.name, uuid=flow_id)
        detail.meta = meta
        book.add(detail)
        backend = flowlog.get_backend()
        with contextlib.closing(backend.get_connection()) as conn:
            conn.save_logbook(book)
        faults.window('flow-logged')
        engine = engines.load(flow, store=store, flow_detail=detail,
                              book=book, backend=lease.backend(),
                              engine=ENGINE_KIND)
    except BaseException:       # SimulatedCrash too: a dead process's
        lease.release()         # lease goes
        raise
    return FlowHandle(flow_id, flow, engine, meta, lease)


def find_detail(flow_id):
    """(logbook uuid, flow detail with its tasks) of a stored flow."""
    backend = flowlog.get_backend()
    try:
        with contextlib.closing(backend.get_connection()) as conn:
            return conn.find_flow(flow_id)
    except tf_exceptions.NotFound:
        raise exception.FlowNotFound(flow_id=flow_id)


def find_atom(detail, name):
    """The atom detail called ``name`` of a flow detail, or None."""
    for ad in detail:
        if ad.name == name:
            return ad
    return None


def check_plugins(detail):
    """Raise :class:`~resize_flows.exception.PluginNotInstalled` (one
    line, naming it) when a plugin the stored flow was built with is not
    installed here: checked before a flow is taken, so nothing changes."""
    factory = (detail.meta or {}).get('factory') or {}
    rf_plugins.load(rf_plugins.names_of_flow(factory.get('kwargs')))


def rebuild(flow_id, detail):
    """The flow of a stored flow detail, built again by its factory (with
    the plugins it was built with)."""
    try:
        return engines.helpers.flow_from_detail(detail)
    except (ImportError, ValueError) as e:
        raise exception.FlowFactoryInvalid(flow_id=flow_id, reason=str(e))


def load(flow_id, lease=None):
    """Load a stored flow into an engine, rebuilt from the flow log alone.

    ``lease`` is the Lease this process holds on it, if any.
    """
    _book_uuid, detail = find_detail(flow_id)
    flow = rebuild(flow_id, detail)
    backend = (lease.backend() if lease is not None
               else flowlog.get_backend())
    meta = dict(detail.meta or {})
    injector = find_atom(detail, INJECTOR)
    if injector is not None and injector.results is None:
        # Its process died between TaskFlow's two writes of the store.
        injector.results = {}
    engine = engines.load(flow, flow_detail=detail, backend=backend,
                          engine=ENGINE_KIND)
    if lease is not None:
        _complete_store(engine, flow_id, meta,
                        {} if injector is None else injector.results)
    return FlowHandle(flow_id, flow, engine, meta, lease)


def _complete_store(engine, flow_id, meta, stored):
    """Put back into a flow's store what its meta knows and the store
    lacks: the whole store of a flow whose process died before it was
    saved, and the flow's own id in a flow stored by older code."""
    known = {'migration_uuid': meta.get('migration_uuid'),
             'instance_uuid': meta.get('instance_uuid'),
             'request_id': meta.get('request_id'),
             'flow_id': flow_id}
    missing = {key: value for key, value in known.items()
               if key not in stored and
               (value is not None or key == 'request_id')}
    if missing:
        engine.storage.inject(missing)


def discard(handle):
    """Delete a stored flow that never ran (its operation was refused)."""
    try:
        backend = flowlog.get_backend()
        with contextlib.closing(backend.get_connection()) as conn:
            try:
                book_uuid, _detail = conn.find_flow(handle.flow_id)
            except tf_exceptions.NotFound:
                book_uuid = None
            if book_uuid is not None:
                conn.destroy_logbook(book_uuid)
    finally:
        handle.close()


def run(handle, listeners=()):
    """Run a loaded flow to its end with the action-event listener and any
    extra listener factories (each called with the engine), then give up
    this process's lease.

    Returns the flow's final state. When a task failed and the flow was
    undone, the task's exception is raised again, as the caller of a plain
    function would see it.
    """
    engine = handle.engine
    active = [rf_listeners.ActionEventListener(engine, handle.meta),
              notifications.NotificationListener(engine, handle.meta)]
    active.extend(factory(engine) for factory in listeners)
    try:
        with contextlib.ExitStack() as stack:
            for listener in active:
                stack.enter_context(listener)
            fenced = False
            if handle.lease is not None:
                stack.enter_context(leases.holding(
                    handle.flow_id, handle.lease.owner, handle.lease.token,
                    lease=handle.lease))
            try:
                engine.run()
            except Exception as e:
                fenced = is_fenced(e)
                if fenced:
                    # Another process holds the flow now: stop working on
                    # it and leave its records to that process.
                    LOG.warning('stopped running flow %s: %s',
                                handle.flow_id, e)
                raise
            finally:
                if not fenced:
                    _finish_action(handle, engine.storage.get_flow_state())
        return engine.storage.get_flow_state()
    finally:
        handle.close()


def is_fenced(error):
    """Whether ``error`` (as an engine run raised it) says that this
    process no longer holds the flow (the flow log refused its write)."""
    if isinstance(error, exception.FlowFenced):
        return True
    if isinstance(error, tf_exceptions.WrappedFailure):
        return error.check(exception.FlowFenced) is not None
    return False


def _finish_action(handle, flow_state):
    meta = handle.meta
    if not meta.get('request_id'):
        return
    instance_actions.action_finish(meta['instance_uuid'], meta['request_id'],
                                   message=str(flow_state))
