"""Create, run, inspect, resume and roll back flows with the flow log.

A flow is created in two steps so that no operation ever exists without its
flow: :func:`create` takes the flow's lease and stores the flow (factory
name and arguments, the store, and meta naming the operation, instance and
migration) under a flow id chosen up front; the API then starts the
operation in the records with that id; :func:`run` runs it. If the records
refuse the operation, the API calls :func:`discard` and the stored flow
goes.

The process that holds a flow renews its lease while it works on it and
releases it when done. A flow that is neither finished nor leased was
interrupted: its process died. Only such a flow may be resumed
(:func:`resume`) or rolled back (:func:`rollback`) by another process.
A flow posted as a job on the jobboard that no conductor has started yet
is not interrupted but queued: resume refuses it, rollback cancels it.

TaskFlow's own resume has traps (shared/TASKFLOW.md): running a REVERTED
flow again re-executes it forward from scratch, and after an undo step
raised, a plain run marks the flow REVERTED without undoing the steps
before it. :func:`resume` and :func:`rollback` read the atom states first
and never fall into either.

Each flow has a logbook of its own (named after the operation and the
instance), so loading one flow never reads another's log.
"""
import contextlib
import datetime
import json
import logging
import os
import socket
import threading
import uuid as uuidlib

from oslo_utils import importutils
import sqlalchemy as sa
from taskflow import engines
from taskflow import exceptions as tf_exceptions
from taskflow.listeners import base as listener_base
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states
from taskflow.types import failure as tf_failure

from resize_flows import conf as rf_conf
from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import fencing
from resize_flows import flows as rf_flows
from resize_flows import notifications
from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import models
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults

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

#: This process's name as a lease owner.
OWNER = '%s:%d:%s' % (socket.gethostname(), os.getpid(),
                      uuidlib.uuid4().hex[:8])

# What `flow list` and `flow show` call a flow, from its TaskFlow state,
# its lease and whether it was posted as a job.
QUEUED = 'queued'
RUNNING = 'running'
INTERRUPTED = 'interrupted'
FINISHED = 'finished'
ROLLED_BACK = 'rolled back'
STUCK = 'stuck'
STATUSES = (QUEUED, RUNNING, INTERRUPTED, FINISHED, ROLLED_BACK, STUCK)

#: The stored states of a flow whose engine never ran it: None until its
#: engine first saves it, PENDING after.
_NEVER_RUN = (None, tf_states.PENDING)


def flow_status(flow_state, lease, job_uuid=None):
    """``queued`` (posted as job ``job_uuid``, not started, not leased:
    a conductor will start it), ``running``, ``interrupted``,
    ``finished``, ``rolled back`` or ``stuck`` (an undo step failed: see
    the failed task)."""
    if flow_state == tf_states.SUCCESS:
        return FINISHED
    if flow_state == tf_states.REVERTED:
        return ROLLED_BACK
    if lease is not None and lease['live']:
        return RUNNING
    if flow_state == tf_states.FAILURE:
        return STUCK
    if flow_state in _NEVER_RUN and job_uuid is not None:
        return QUEUED
    return INTERRUPTED


class Lease:
    """This process's hold on a flow, renewed in the background.

    ``token`` is the lease's fencing token: the flow log refuses this
    process's writes of the flow once another process holds the lease
    (:meth:`backend`). ``on_lost`` is called (once, from the renewing
    thread) when the lease turns out to be someone else's.
    """

    def __init__(self, flow_id, owner=None, on_lost=None):
        self.flow_id = flow_id
        self.owner = owner or OWNER
        self.token = None
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = None
        self.lost = False

    def backend(self):
        """The flow log, fenced by this lease."""
        return flowlog.get_backend().held_by(self.owner, self.token)

    def acquire(self):
        self.token = repository.lease_acquire(self.flow_id, self.owner,
                                              CONF.flows.lease_seconds)
        self._thread = threading.Thread(
            target=self._renew, name='lease-%s' % self.flow_id, daemon=True)
        self._thread.start()
        return self

    def _renew(self):
        seconds = CONF.flows.lease_seconds
        while not self._stop.wait(seconds / 3.0):
            try:
                if not repository.lease_renew(self.flow_id, self.owner,
                                              seconds, self.token):
                    self.lost = True
                    LOG.error('lost the lease of flow %s', self.flow_id)
                    if self.on_lost is not None:
                        self.on_lost(self)
                    return
            except Exception:
                LOG.exception('could not renew the lease of flow %s',
                              self.flow_id)

    def release(self):
        self._stop.set()
        if self._thread is not None and \
                self._thread is not threading.current_thread():
            self._thread.join()
        repository.lease_release(self.flow_id, self.owner, self.token)


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
    the operation before anything is stored.
    """
    rf_conf.validate(CONF)
    factory_name, factory_kwargs = OPERATIONS[operation]
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
    lease = Lease(flow_id).acquire()
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


def _rebuild(flow_id, detail):
    try:
        return engines.helpers.flow_from_detail(detail)
    except (ImportError, ValueError) as e:
        raise exception.FlowFactoryInvalid(flow_id=flow_id, reason=str(e))


def load(flow_id, lease=None):
    """Load a stored flow into an engine, rebuilt from the flow log alone.

    ``lease`` is the Lease this process holds on it, if any.
    """
    _book_uuid, detail = find_detail(flow_id)
    flow = _rebuild(flow_id, detail)
    backend = (lease.backend() if lease is not None
               else flowlog.get_backend())
    meta = dict(detail.meta or {})
    injector = _find_atom(detail, _INJECTOR)
    if injector is not None and injector.results is None:
        # Its process died between TaskFlow's two writes of the store.
        injector.results = {}
    engine = engines.load(flow, flow_detail=detail, backend=backend,
                          engine=ENGINE_KIND)
    if lease is not None:
        _complete_store(engine, flow_id, meta,
                        {} if injector is None else injector.results)
    return FlowHandle(flow_id, flow, engine, meta, lease)


#: The name of TaskFlow's atom that holds a flow's store.
_INJECTOR = '_TaskFlow_INJECTOR'


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
    active = [ActionEventListener(engine, handle.meta),
              notifications.NotificationListener(engine, handle.meta)]
    active.extend(factory(engine) for factory in listeners)
    try:
        with contextlib.ExitStack() as stack:
            for listener in active:
                stack.enter_context(listener)
            fenced = False
            if handle.lease is not None:
                stack.enter_context(fencing.holding(
                    handle.flow_id, handle.lease.owner, handle.lease.token))
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
    repository.action_finish(meta['instance_uuid'], meta['request_id'],
                             message=str(flow_state))


# -- reading the flow log ----------------------------------------------------

#: TaskFlow's flow states a flow can be stored in.
FLOW_STATES = (tf_states.PENDING, tf_states.RUNNING, tf_states.SUCCESS,
               tf_states.FAILURE, tf_states.REVERTING, tf_states.REVERTED,
               tf_states.SUSPENDING, tf_states.SUSPENDED, tf_states.RESUMING)
_ENDED = (tf_states.SUCCESS, tf_states.REVERTED)
#: Not ended and not failed: running when leased, else interrupted.
_UNDER_WAY = tuple(s for s in FLOW_STATES
                   if s not in _ENDED + (tf_states.FAILURE,))

_FLOWS = flowlog.FLOWS
_LEASES = repository.LEASES


def _status_clause(status, now):
    """SQL for :func:`flow_status` == ``status`` (the state column is
    indexed, so each is an index range, not a scan of every flow; a flow
    never run has the state NULL until its engine first saves it)."""
    live = _LEASES.c.expires_at > now
    not_live = sa.or_(_LEASES.c.flow_id.is_(None), _LEASES.c.expires_at <= now)
    state = _FLOWS.c.state
    never_run = sa.or_(state.is_(None), state == tf_states.PENDING)
    under_way = sa.or_(state.is_(None), state.in_(_UNDER_WAY))
    if status == FINISHED:
        return state == tf_states.SUCCESS
    if status == ROLLED_BACK:
        return state == tf_states.REVERTED
    if status == RUNNING:
        return sa.and_(sa.or_(under_way, state == tf_states.FAILURE), live)
    if status == STUCK:
        return sa.and_(state == tf_states.FAILURE, not_live)
    if status == QUEUED:
        return sa.and_(never_run, _FLOWS.c.job_uuid.is_not(None), not_live)
    return sa.and_(under_way, not_live,
                   sa.not_(sa.and_(never_run,
                                   _FLOWS.c.job_uuid.is_not(None))))


def _entry(row, now):
    lease = None
    if row.owner is not None:
        lease = {'owner': row.owner, 'live': row.expires_at > now}
    return {
        'flow_id': row.uuid,
        'operation': row.operation,
        'instance_uuid': row.instance_uuid,
        'migration_uuid': row.migration_uuid,
        'project_id': row.project_id,
        'state': row.state,
        'status': flow_status(row.state, lease, row.job_uuid),
        'owner': lease['owner'] if lease and lease['live'] else None,
        'job_uuid': row.job_uuid,
        'created_at': _iso(row.created_at),
        'updated_at': _iso(row.updated_at),
    }


def _listing():
    return (sa.select(_FLOWS.c.uuid, _FLOWS.c.state, _FLOWS.c.operation,
                      _FLOWS.c.instance_uuid, _FLOWS.c.migration_uuid,
                      _FLOWS.c.project_id, _FLOWS.c.job_uuid, _FLOWS.c.created_at,
                      _FLOWS.c.updated_at, _LEASES.c.owner,
                      _LEASES.c.expires_at)
            .select_from(_FLOWS.outerjoin(
                _LEASES, _LEASES.c.flow_id == _FLOWS.c.uuid)))


def list_flows(status=None, server=None, operation=None, limit=None,
               marker=None, project=None):
    """Stored flows, newest first, as dicts with ``flow_id``,
    ``operation``, ``instance_uuid``, ``migration_uuid``, ``project_id``
    (of the flow's server; ``project`` keeps only that one's flows),
    ``state`` (the
    flow log's), ``status`` (see :func:`flow_status`), ``owner``,
    ``job_uuid`` (the job it was posted as, if it was), ``created_at``,
    ``updated_at``.

    ``status`` is one of :data:`STATUSES` or a TaskFlow flow state;
    ``server`` an instance uuid. ``limit`` flows at most, those after the
    flow ``marker`` (the last flow of the previous page): one indexed
    query whatever the number of stored flows.
    """
    now = models.utcnow()
    query = _listing()
    if status in STATUSES:
        query = query.where(_status_clause(status, now))
    elif status is not None:
        if status not in FLOW_STATES:
            raise exception.InvalidInput(
                reason='unknown flow state %r (one of %s, or a TaskFlow '
                       'state: %s)' % (status, ', '.join(STATUSES),
                                       ', '.join(FLOW_STATES)))
        query = query.where(_FLOWS.c.state == status)
    if server is not None:
        query = query.where(_FLOWS.c.instance_uuid == server)
    if operation is not None:
        query = query.where(_FLOWS.c.operation == operation)
    if project is not None:
        query = query.where(_FLOWS.c.project_id == project)
    with db.get_reader().connect() as conn:
        if marker is not None:
            created = conn.execute(sa.select(_FLOWS.c.created_at).where(
                _FLOWS.c.uuid == marker)).scalar()
            if created is None:
                raise exception.MarkerNotFound(marker=marker)
            # The first condition is an index range where the page starts;
            # the second drops the marker and those before it in a tie.
            query = query.where(
                _FLOWS.c.created_at <= created,
                sa.or_(_FLOWS.c.created_at < created,
                       _FLOWS.c.uuid < marker))
        query = query.order_by(_FLOWS.c.created_at.desc(),
                               _FLOWS.c.uuid.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = conn.execute(query).all()
    return [_entry(row, now) for row in rows]


def flow_owner(flow_id):
    """{'instance_uuid', 'project_id'} of a stored flow (the project of
    its server, the target of the flow rules), or None."""
    with db.get_reader().connect() as conn:
        row = conn.execute(sa.select(
            _FLOWS.c.instance_uuid, _FLOWS.c.project_id).where(
                _FLOWS.c.uuid == flow_id)).first()
    if row is None:
        return None
    return {'instance_uuid': row.instance_uuid, 'project_id': row.project_id}


def flow_brief(flow_id):
    """{'operation', 'state', 'status', 'job_uuid'} of a stored flow, or
    None: one row read, for checks on every request."""
    now = models.utcnow()
    with db.get_reader().connect() as conn:
        row = conn.execute(_listing().where(_FLOWS.c.uuid == flow_id)).first()
    if row is None:
        return None
    entry = _entry(row, now)
    return {key: entry[key]
            for key in ('operation', 'state', 'status', 'job_uuid')}


def purge_flows(before, dry_run=False, batch=500):
    """Delete the flows that ended (finished or rolled back) before
    ``before`` (a naive UTC datetime), with their tasks and logbooks.

    Kept whatever their age: a flow not ended, and a finished move whose
    migration still waits for confirm or revert (rolling that move back
    needs its flow). Deletes in batches of ``batch`` flows, one transaction
    each, so that running flows are not held up. Returns the number of
    flows deleted (or that would be, with ``dry_run``).
    """
    migrations = models.Migration.__table__
    waiting = sa.exists().where(
        migrations.c.uuid == _FLOWS.c.migration_uuid,
        migrations.c.status == states.MIGRATION_FINISHED)
    chosen = (sa.select(_FLOWS.c.uuid, _FLOWS.c.logbook_uuid)
              .where(_FLOWS.c.state.in_(_ENDED),
                     _FLOWS.c.updated_at < before,
                     ~(_FLOWS.c.state == tf_states.SUCCESS) | ~waiting))
    engine = db.get_engine()
    if dry_run:
        with db.get_reader().connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(
                chosen.subquery())).scalar()
    books = flowlog.BOOKS
    purged = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(chosen.limit(batch)).all()
            if not rows:
                return purged
            flow_ids = [r.uuid for r in rows]
            conn.execute(_FLOWS.delete().where(_FLOWS.c.uuid.in_(flow_ids)))
            conn.execute(_LEASES.delete().where(
                _LEASES.c.flow_id.in_(flow_ids)))
            book_ids = {r.logbook_uuid for r in rows} - {None}
            if book_ids:
                # Logbooks left empty (resize-flows keeps one per flow).
                conn.execute(books.delete().where(
                    books.c.uuid.in_(book_ids),
                    ~sa.exists().where(_FLOWS.c.logbook_uuid == books.c.uuid)))
            purged += len(flow_ids)


def _iso(value):
    return value.isoformat(timespec='seconds') if value else None


def _summary(value, limit=60):
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def show_flow(flow_id):
    """A flow as :func:`list_flows` gives it, plus ``tasks``: per task in
    flow order its ``name``, ``state``, ``intention``, ``progress``,
    ``started_at``, ``finished_at``, ``duration`` (from the instance
    action events), ``result`` (a summary), ``failure`` (the exception
    and its traceback)."""
    _book, detail = find_detail(flow_id)
    lease = repository.lease_get(flow_id)
    job_uuid = _job_uuid(flow_id)
    meta = dict(detail.meta or {})
    flow = _rebuild(flow_id, detail)
    events = _events_by_task(meta)
    tasks = []
    for atom in rf_flows.iter_tasks(flow):
        ad = _find_atom(detail, atom.name)
        started, finished = events.get(atom.name, (None, None))
        entry = {
            'name': atom.name,
            'state': ad.state if ad else tf_states.PENDING,
            'intention': ad.intention if ad else tf_states.EXECUTE,
            'progress': _progress(ad),
            'started_at': _iso(started),
            'finished_at': _iso(finished),
            'duration': (round((finished - started).total_seconds(), 3)
                         if started and finished else None),
            'result': None,
            'failure': None,
        }
        if ad is not None:
            if ad.state in (tf_states.SUCCESS, tf_states.REVERTED,
                            tf_states.REVERTING) and not isinstance(
                                ad.results, tf_failure.Failure):
                entry['result'] = _summary(ad.results)
            fail = (ad.revert_failure if ad.state == tf_states.REVERT_FAILURE
                    else ad.failure)
            if fail is not None:
                entry['failure'] = fail.pformat(traceback=True)
        tasks.append(entry)
    out = {
        'flow_id': flow_id,
        'operation': meta.get('operation'),
        'instance_uuid': meta.get('instance_uuid'),
        'migration_uuid': meta.get('migration_uuid'),
        'state': detail.state,
        'status': flow_status(detail.state, lease, job_uuid),
        'owner': lease['owner'] if lease and lease['live'] else None,
        'job_uuid': job_uuid,
        'holders': list(meta.get('holders') or []),
        'tasks': tasks,
    }
    return out


def _job_uuid(flow_id):
    with db.get_reader().connect() as conn:
        return conn.execute(sa.select(_FLOWS.c.job_uuid).where(
            _FLOWS.c.uuid == flow_id)).scalar()


def flow_failure(flow_id):
    """The error of the task that failed a flow, as one line of text
    (``ExceptionClass: message``), or None."""
    _book, detail = find_detail(flow_id)
    for ad in detail:
        fail = ad.failure or ad.revert_failure
        if fail is not None:
            name = next(iter(fail), 'Error').rsplit('.', 1)[-1]
            return '%s in %s: %s' % (name, ad.name, fail.exception_str)
    return None


def _progress(ad):
    """A task's progress: what it reported, or what its state says (the
    flow log does not write the engine's own 0-at-start, 1-at-end marks)."""
    if ad is None:
        return None
    reported = (ad.meta or {}).get(flowlog.PROGRESS)
    if ad.state == tf_states.SUCCESS:
        return 1.0
    if reported is None and ad.state == tf_states.RUNNING:
        return 0.0
    return reported


def _find_atom(detail, name):
    for ad in detail:
        if ad.name == name:
            return ad
    return None


def _events_by_task(meta):
    """{task name: (start, finish)} from the flow's action events."""
    out = {}
    if not meta.get('request_id'):
        return out
    for action in repository.action_list(meta['instance_uuid']):
        if action['request_id'] != meta['request_id']:
            continue
        for ev in action['events']:
            start = ev['start_time'] and datetime.datetime.fromisoformat(
                ev['start_time'])
            end = ev['finish_time'] and datetime.datetime.fromisoformat(
                ev['finish_time'])
            out[ev['event']] = (start, end)
    return out


# -- resume and rollback -----------------------------------------------------

def _take(flow_id, owner=None):
    """Lease a stored flow for this process (or ``owner``) and load it;
    refuse one that another live process holds."""
    rf_conf.validate(CONF)
    find_detail(flow_id)
    lease = Lease(flow_id, owner).acquire()
    try:
        return load(flow_id, lease)
    except Exception:
        lease.release()
        raise


def _record_holder(handle):
    """Note in the flow's meta who took it, with which fencing token and
    when (``flow show``: ``holders``), so that the flow log shows each
    takeover. One write, itself fenced."""
    holders = list(handle.meta.get('holders') or [])
    holders.append({'owner': handle.lease.owner, 'token': handle.lease.token,
                    'at': models.utcnow().isoformat(timespec='seconds')})
    handle.meta['holders'] = holders
    handle.engine.storage.update_flow_metadata({'holders': holders})


def _atoms(handle):
    """[(name, state, intention)] of the flow's tasks, in flow order."""
    storage = handle.engine.storage
    return [(atom.name, storage.get_atom_state(atom.name),
             storage.get_atom_intention(atom.name))
            for atom in rf_flows.iter_atoms(handle.flow)]


def _point_of_no_return_atoms(handle):
    """{name: task} of the flow's tasks whose execute cannot be undone
    once it has deleted files."""
    return {atom.name: atom for atom in rf_flows.iter_tasks(handle.flow)
            if getattr(atom, 'point_of_no_return', False)}


def _past_no_return(handle, atoms):
    """Names of the points of no return this flow has passed: done, or
    interrupted after deleting what an undo would need."""
    tasks = _point_of_no_return_atoms(handle)
    past = []
    for name, state, _intention in atoms:
        if name not in tasks:
            continue
        if state in (tf_states.SUCCESS, tf_states.REVERT_FAILURE) or (
                state in (tf_states.RUNNING, tf_states.FAILURE,
                          tf_states.REVERTING)
                and not tasks[name].undoable(handle.meta['migration_uuid'])):
            past.append(name)
    return past


#: Set in a flow's meta when the records never started its operation:
#: why (the flow then ends rolled back without running anything).
NEVER_STARTED = 'never_started'


def _never_started(handle):
    """Why the records never started this flow's operation, or None when
    they did: its process died after storing the flow and before the
    API's compare-and-swap start, so no migration names the flow (a move's
    migration does not exist; a confirm's or revert's belongs to another
    flow, maybe a later one's). Not asked once the flow's first task has
    run: it found the records started."""
    lifecycle = next(rf_flows.iter_tasks(handle.flow)).name
    _book, detail = find_detail(handle.flow_id)
    first = _find_atom(detail, lifecycle)
    if first is not None and first.state not in (None, tf_states.PENDING):
        return None
    try:
        mig = repository.migration_get(handle.meta['migration_uuid'])
    except exception.MigrationNotFound:
        return 'no migration %s exists' % handle.meta['migration_uuid']
    if mig['flow_id'] != handle.flow_id:
        return 'migration %s belongs to flow %s' % (mig['uuid'],
                                                    mig['flow_id'])
    return None


def _end_never_started(handle, reason):
    """End a flow whose operation the records never started as rolled
    back, touching nothing else (no task runs, nothing is undone: it owns
    nothing); the reason stays in its meta (``flow show``)."""
    try:
        LOG.warning('flow %s never started its operation (%s): ending it '
                    'as rolled back, changing nothing else', handle.flow_id,
                    reason)
        storage = handle.engine.storage
        storage.update_flow_metadata({NEVER_STARTED: reason})
        storage.set_flow_state(tf_states.REVERTED)
    finally:
        handle.close()
    return tf_states.REVERTED


def _take_unless_never_started(flow_id, owner=None):
    """(handle, None) of a flow taken for resume or rollback, or (None,
    final state) of one the records never started, ended here."""
    handle = _take(flow_id, owner)
    try:
        if handle.engine.storage.get_flow_state() in _ENDED:
            return handle, None
        reason = _never_started(handle)
    except BaseException:
        handle.close()
        raise
    if reason is None:
        return handle, None
    return None, _end_never_started(handle, reason)


def run_job(flow_id, listeners=(), owner=None):
    """Run a stored flow for a conductor's job, under ``owner``'s lease:
    a flow never run starts, an interrupted one is resumed (see
    :func:`resume`), an ended one or one stuck on a failed undo step is
    left as it is. Returns the flow's state at the end."""
    brief = flow_brief(flow_id)
    if brief is None:
        raise exception.FlowNotFound(flow_id=flow_id)
    if brief['state'] in _ENDED or brief['status'] == STUCK:
        return brief['state']
    if brief['state'] in _NEVER_RUN:
        # Never started: nothing to resume, no task ran (its tasks may not
        # be in the log yet: the engine adds them as it first compiles).
        return _start(_take(flow_id, owner), listeners)
    return resume(flow_id, listeners, owner=owner)


def _start(handle, listeners):
    """Run a flow that was never run (taken already); should another
    process have run it meanwhile, as :func:`resume` does. One the
    records never started ends rolled back (:func:`_end_never_started`)."""
    if handle.engine.storage.get_flow_state() not in _NEVER_RUN:
        handle.close()
        return resume(handle.flow_id, listeners, owner=handle.lease.owner)
    try:
        reason = _never_started(handle)
    except BaseException:
        handle.close()
        raise
    if reason is not None:
        return _end_never_started(handle, reason)
    return _run_expecting(handle, listeners, None)


def resume(flow_id, listeners=(), owner=None):
    """Run an interrupted flow on from where it stopped.

    Tasks that had finished are not run again (their stored results feed
    the later ones); a task that was running when its process died runs
    again from its start; a flow that was being undone goes on undoing. A
    flow stuck on a point of no return (its files deleted, the undo
    refused) is finished forward. Refused: a finished or rolled-back flow,
    a flow another live process holds, a flow stuck on a failed undo step
    (that needs :func:`rollback` once the cause is fixed), a flow queued
    on the jobboard (a conductor will start it; :func:`rollback` cancels
    it). A flow that never ran a task, its operation started in the
    records (its process died before it ran), is started. A flow whose
    operation the records never started (its process died between
    storing it and starting it) ends rolled back, changing nothing else
    (:func:`_end_never_started`). An unfinished rollback of a finished
    move first claims the server, if it had not yet (:func:`_hold_claim`).
    """
    brief = flow_brief(flow_id)
    if brief is not None and brief['status'] == QUEUED:
        raise exception.FlowStateConflict(
            verb='resume', flow_id=flow_id,
            reason='it is queued as job %s on the jobboard and a conductor '
                   'will start it (roll it back to cancel it)'
                   % brief['job_uuid'])
    handle, ended = _take_unless_never_started(flow_id, owner)
    if handle is None:
        return ended
    if handle.engine.storage.get_flow_state() in _NEVER_RUN:
        # Its process died before it ran anything: start it.
        return _run_expecting(handle, listeners, None)
    try:
        state = handle.engine.storage.get_flow_state()
        if state == tf_states.SUCCESS:
            raise exception.FlowStateConflict(
                verb='resume', flow_id=flow_id, reason='it has finished')
        if state == tf_states.REVERTED:
            raise exception.FlowStateConflict(
                verb='resume', flow_id=flow_id,
                reason='it was rolled back; start a new operation instead')
        atoms = _atoms(handle)
        undoing = any(intention == tf_states.REVERT
                      for _name, _state, intention in atoms)
        failed = [name for name, st, _ in atoms
                  if st == tf_states.REVERT_FAILURE]
        if failed:
            if not set(failed) <= set(_point_of_no_return_atoms(handle)):
                raise exception.FlowStateConflict(
                    verb='resume', flow_id=flow_id,
                    reason='the undo step of %s failed; fix its cause, '
                           'then roll the flow back' % ', '.join(failed))
            _redirect_forward(handle, atoms, failed)
            undoing = False
        handle.engine.compile()
        handle.engine.prepare()
        if undoing and handle.meta.get(UNDOING_FINISHED_MOVE):
            _hold_claim(handle)
    except BaseException:
        handle.close()
        raise
    return _run_expecting(handle, listeners,
                          tf_states.REVERTED if undoing else None)


def _run_expecting(handle, listeners, expected):
    """Run; when the flow ends in ``expected`` (REVERTED for an undo that
    was asked for, or that was under way), that is success, not the
    failure TaskFlow raises again for a reverted flow."""
    try:
        _record_holder(handle)
    except Exception:
        handle.close()
        raise
    try:
        return run(handle, listeners)
    except Exception:
        brief = flow_brief(handle.flow_id)
        if expected is not None and brief and brief['state'] == expected:
            return expected
        raise


def _redirect_forward(handle, atoms, failed):
    """A point of no return's undo refused: finish the flow instead."""
    engine = handle.engine
    engine.compile()
    engine.prepare()
    storage = engine.storage
    for name, state, intention in atoms:
        if name in failed:
            storage.reset(name)
        elif intention != tf_states.EXECUTE:
            storage.set_atom_intention(name, tf_states.EXECUTE)
    storage.set_flow_state(tf_states.RUNNING)


def rollback(flow_id, listeners=()):
    """Undo every task of a flow that ran or was running, newest first.

    Works on an interrupted flow, a flow whose undo step failed (that step
    is tried again, then the undo goes on), a finished resize or migration
    that no later operation has built on, and a flow that never started
    (queued on the jobboard, or its process died first): that one is
    cancelled (:func:`_cancel`). Refused: a flow already rolled back, a
    flow another live process holds, and a flow past its point of no
    return (a confirm or revert that deleted files: resume it instead).
    """
    handle, ended = _take_unless_never_started(flow_id)
    if handle is None:
        return ended
    if handle.engine.storage.get_flow_state() in _NEVER_RUN:
        return _cancel(handle, listeners)
    try:
        engine = handle.engine
        state = engine.storage.get_flow_state()
        if state == tf_states.REVERTED:
            raise exception.FlowStateConflict(
                verb='roll back', flow_id=flow_id,
                reason='it is rolled back already')
        atoms = _atoms(handle)
        past = _past_no_return(handle, atoms)
        if past:
            raise exception.FlowStateConflict(
                verb='roll back', flow_id=flow_id,
                reason='%s has deleted files already; resume the flow to '
                       'finish it' % ', '.join(past))
        if state == tf_states.SUCCESS:
            # The undo is recorded first, then the server claimed: killed
            # in between, the flow is an unfinished undo, which blocks the
            # server's other operations, and whose resume or rollback
            # claims the server before it undoes anything.
            _check_finished_move(handle)
            handle.meta[UNDOING_FINISHED_MOVE] = True
            engine.storage.update_flow_metadata(
                {UNDOING_FINISHED_MOVE: True})
        engine.compile()
        engine.prepare()
        storage = engine.storage
        for name, st, _intention in atoms:
            if st == tf_states.REVERT_FAILURE:
                # TaskFlow would call the flow REVERTED without undoing
                # the tasks before this one: undo this one again.
                storage.set_atom_state(name, tf_states.REVERTING)
            if st != tf_states.PENDING:
                storage.set_atom_intention(name, tf_states.REVERT)
        if state in (tf_states.SUCCESS, tf_states.FAILURE):
            storage.set_flow_state(tf_states.RUNNING)
        if handle.meta.get(UNDOING_FINISHED_MOVE):
            faults.window('rollback-recorded')
            _hold_claim(handle)
    except BaseException:
        handle.close()
        raise
    return _run_expecting(handle, listeners, tf_states.REVERTED)


def _cancel(handle, listeners):
    """Roll back a flow none of whose tasks ran: undo what the API did
    before it stored the flow, which is what its first task, the
    lifecycle one, undoes (e.g. the migration ``error`` and the instance
    back as it was). That task is recorded as failed with
    :class:`~resize_flows.exception.FlowCancelled` and the engine undoes
    it, so the flow log, the instance's action events and a client
    waiting on the flow see an ordinary rolled-back flow. The caller holds
    the flow's lease: a conductor that claims its job meanwhile cannot
    take the flow, and once it is rolled back only consumes the job."""
    engine = handle.engine
    try:
        engine.compile()
        engine.prepare()
        storage = engine.storage
        atoms = _atoms(handle)
        ran = [name for name, st, _ in atoms if st != tf_states.PENDING]
        if ran:
            raise exception.FlowStateConflict(
                verb='cancel', flow_id=handle.flow_id,
                reason='%s ran already' % ', '.join(ran))
        lifecycle = next(rf_flows.iter_tasks(handle.flow)).name
        cancelled = exception.FlowCancelled(flow_id=handle.flow_id,
                                            owner=handle.lease.owner)
        storage.save(lifecycle, tf_failure.Failure.from_exception(cancelled),
                     tf_states.FAILURE)
        for name, _st, _intention in atoms:
            storage.set_atom_intention(name, tf_states.REVERT)
    except Exception:
        handle.close()
        raise
    return _run_expecting(handle, listeners, tf_states.REVERTED)


#: Set in a flow's meta when its rollback as a finished move was recorded:
#: its undo must hold the server (task_state ``resize_reverting``).
UNDOING_FINISHED_MOVE = 'undoing_finished_move'


def _check_finished_move(handle):
    """Rolling back a finished move is an operation on its instance: only
    while the move waits for confirm or revert and nothing else runs."""
    mig = repository.migration_get(handle.meta['migration_uuid'])
    if mig['status'] != states.MIGRATION_FINISHED:
        raise exception.FlowStateConflict(
            verb='roll back', flow_id=handle.flow_id,
            reason='its migration is %s now' % mig['status'])
    inst = repository.instance_get(mig['instance_uuid'])
    if inst['vm_state'] != states.RESIZED or inst['task_state'] is not None:
        raise exception.FlowStateConflict(
            verb='roll back', flow_id=handle.flow_id,
            reason='instance %s is %s with task %s' % (
                inst['uuid'], inst['vm_state'], inst['task_state']))


def _hold_claim(handle):
    """Make sure the recorded rollback of a finished move holds its server
    (task_state ``resize_reverting`` by compare-and-swap from RESIZED and
    idle), claiming it if the process that recorded the undo died first.
    Held already once the undo has begun (the last task's undo moves the
    migration off ``finished``). Lost to another operation that started
    first: the undo is taken back, the flow is finished again, and the
    rollback refused."""
    last = list(rf_flows.iter_tasks(handle.flow))[-1].name
    undo_begun = handle.engine.storage.get_atom_state(last) != \
        tf_states.SUCCESS
    if undo_begun:
        return
    mig = repository.migration_get(handle.meta['migration_uuid'])
    if mig['status'] == states.MIGRATION_FINISHED:
        try:
            repository.instance_update(
                mig['instance_uuid'],
                {'task_state': states.RESIZE_REVERTING},
                expected_vm_state=states.RESIZED,
                expected_task_state=(None, states.RESIZE_REVERTING))
            return
        except (exception.InstanceInvalidState,
                exception.UnexpectedTaskStateError):
            pass
    inst = repository.instance_get(mig['instance_uuid'])
    _unrecord_rollback(handle)
    raise exception.FlowStateConflict(
        verb='roll back', flow_id=handle.flow_id,
        reason='another operation took instance %s first (migration %s is '
               '%s, task %s); the flow is finished again' % (
                   inst['uuid'], mig['uuid'], mig['status'],
                   inst['task_state']))


def _unrecord_rollback(handle):
    """Take back the recorded rollback of a finished move that could not
    claim its server: the flow is finished again, as it was."""
    storage = handle.engine.storage
    for name, _state, _intention in _atoms(handle):
        storage.set_atom_intention(name, tf_states.EXECUTE)
    storage.update_flow_metadata({UNDOING_FINISHED_MOVE: False})
    handle.meta[UNDOING_FINISHED_MOVE] = False
    storage.set_flow_state(tf_states.SUCCESS)


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
