"""The read model of flows: what the flow log says about them.

A flow's status (:func:`flow_status`) is what ``flow list`` and ``flow
show`` call it, from its TaskFlow state, its lease and whether it was
posted as a job, and whether an operator abandoned it: ``queued``,
``running``, ``interrupted``, ``finished``, ``rolled back``, ``stuck`` or
``abandoned``. :func:`list_flows`, :func:`flow_brief` and
:func:`flow_owner` read the flow log's index (``persistence/flowindex.py``,
which holds the SQL); :func:`show_flow` and :func:`flow_failure` read one
stored flow with its tasks. :func:`purge_flows` deletes flows that ended.
"""
import datetime
import json

from taskflow.persistence import models as tf_models
from taskflow import states as tf_states
from taskflow.types import failure as tf_failure

from resize_flows import engine
from resize_flows import exception
from resize_flows import flows as rf_flows
from resize_flows.persistence import attempts
from resize_flows.persistence import flowindex
from resize_flows.persistence import flowlog
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repairs
from resize_flows import plugins as rf_plugins
from resize_flows import states
from resize_flows import timeutils

QUEUED = 'queued'
RUNNING = 'running'
INTERRUPTED = 'interrupted'
FINISHED = 'finished'
ROLLED_BACK = 'rolled back'
STUCK = 'stuck'
#: Given up on by an operator (``flow abandon``): ended, never run again.
ABANDONED = 'abandoned'
STATUSES = (QUEUED, RUNNING, INTERRUPTED, FINISHED, ROLLED_BACK, STUCK,
            ABANDONED)

#: status -> the flow log index's filter for it
_FILTERS = {
    QUEUED: flowindex.queued,
    RUNNING: flowindex.running,
    INTERRUPTED: flowindex.interrupted,
    FINISHED: flowindex.finished,
    ROLLED_BACK: flowindex.rolled_back,
    STUCK: flowindex.stuck,
    ABANDONED: flowindex.abandoned,
}


def flow_status(flow_state, lease, job_uuid=None, abandoned=False,
                gave_up=None):
    """``queued`` (posted as job ``job_uuid``, not started, not leased:
    a conductor will start it), ``running``, ``interrupted``,
    ``finished``, ``rolled back``, ``stuck`` (an undo step failed: see
    the failed task; or ``gave_up``: the conductors gave up on its job
    after ``[jobboard]/max_attempts``, and say why) or ``abandoned``
    (given up on by an operator)."""
    if flow_state == tf_states.SUCCESS:
        return FINISHED
    if flow_state == tf_states.REVERTED:
        return ROLLED_BACK
    if lease is not None and lease['live']:
        return RUNNING
    if abandoned:
        return ABANDONED
    if flow_state == tf_states.FAILURE or gave_up:
        return STUCK
    if flow_state in states.FLOW_NEVER_RUN and job_uuid is not None:
        return QUEUED
    return INTERRUPTED


def _entry(row):
    lease = None
    if row['owner'] is not None:
        lease = {'owner': row['owner'], 'live': row['live']}
    return {
        'flow_id': row['flow_id'],
        'operation': row['operation'],
        'instance_uuid': row['instance_uuid'],
        'migration_uuid': row['migration_uuid'],
        'project_id': row['project_id'],
        'state': row['state'],
        'status': flow_status(row['state'], lease, row['job_uuid'],
                              abandoned=row.get('abandoned', False),
                              gave_up=row.get('gave_up')),
        'owner': lease['owner'] if lease and lease['live'] else None,
        'job_uuid': row['job_uuid'],
        'attempts': row.get('attempts', 0),
        'reason': row.get('gave_up'),
        'created_at': row['created_at'],
        'updated_at': row['updated_at'],
    }


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
    where = None
    if status in STATUSES:
        where = _FILTERS[status]
    elif status is not None:
        if status not in states.FLOW_STATES:
            raise exception.InvalidInput(
                reason='unknown flow state %r (one of %s, or a TaskFlow '
                       'state: %s)' % (status, ', '.join(STATUSES),
                                       ', '.join(states.FLOW_STATES)))
        where = flowindex.in_state(status)
    rows = flowindex.list_rows(where=where, server=server,
                               operation=operation, limit=limit,
                               marker=marker, project=project)
    return [_entry(row) for row in rows]


def flow_owner(flow_id):
    """{'instance_uuid', 'project_id'} of a stored flow (the project of
    its server, the target of the flow rules), or None."""
    return flowindex.owner_of(flow_id)


def flow_row(flow_id):
    """A stored flow as :func:`list_flows` gives it, or None: one row
    read."""
    row = flowindex.get_row(flow_id)
    return None if row is None else _entry(row)


def flow_brief(flow_id):
    """{'operation', 'state', 'status', 'job_uuid'} of a stored flow, or
    None: one row read, for checks on every request."""
    row = flowindex.get_row(flow_id)
    if row is None:
        return None
    entry = _entry(row)
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
    return flowindex.purge(before, dry_run=dry_run, batch=batch)


def _summary(value, limit=60):
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def _task_names(flow_id, detail):
    """The names of a stored flow's tasks in flow order; in the flow
    log's order when a plugin that built it is not installed here."""
    try:
        flow = engine.rebuild(flow_id, detail)
    except exception.PluginNotInstalled:
        return [ad.name for ad in detail
                if isinstance(ad, tf_models.TaskDetail)
                and ad.name != engine.INJECTOR]
    return [atom.name for atom in rf_flows.iter_tasks(flow)]


def show_flow(flow_id):
    """A flow as :func:`list_flows` gives it, plus ``tasks``: per task in
    flow order its ``name``, ``state``, ``intention``, ``progress``,
    ``started_at``, ``finished_at``, ``duration`` (from the instance
    action events), ``result`` (a summary), ``failure`` (the exception
    and its traceback); and ``plugins``, the plugins that built it."""
    _book, detail = engine.find_detail(flow_id)
    lease = flowindex.lease_get(flow_id)
    job_uuid = flowindex.job_uuid(flow_id)
    abandon = repairs.abandon_get(flow_id)
    tried = attempts.get(flow_id) or {}
    meta = dict(detail.meta or {})
    events = _events_by_task(meta)
    tasks = []
    for name in _task_names(flow_id, detail):
        ad = engine.find_atom(detail, name)
        started, finished = events.get(name, (None, None))
        entry = {
            'name': name,
            'state': ad.state if ad else tf_states.PENDING,
            'intention': ad.intention if ad else tf_states.EXECUTE,
            'progress': _progress(ad),
            'started_at': timeutils.iso(started),
            'finished_at': timeutils.iso(finished),
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
        'status': flow_status(detail.state, lease, job_uuid,
                              abandoned=abandon is not None,
                              gave_up=tried.get('reason')),
        'owner': lease['owner'] if lease and lease['live'] else None,
        'job_uuid': job_uuid,
        'abandoned': abandon,
        'attempts': tried.get('attempts', 0),
        'reason': tried.get('reason'),
        'holders': list(meta.get('holders') or []),
        'plugins': rf_plugins.names_of_flow(
            (meta.get('factory') or {}).get('kwargs')),
        'tasks': tasks,
    }
    return out


def flow_failure(flow_id):
    """The error of the task that failed a flow, as one line of text
    (``ExceptionClass: message``), or None."""
    _book, detail = engine.find_detail(flow_id)
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


def _events_by_task(meta):
    """{task name: (start, finish)} from the flow's action events."""
    out = {}
    if not meta.get('request_id'):
        return out
    for action in instance_actions.action_list(meta['instance_uuid']):
        if action['request_id'] != meta['request_id']:
            continue
        for ev in action['events']:
            start = ev['start_time'] and datetime.datetime.fromisoformat(
                ev['start_time'])
            end = ev['finish_time'] and datetime.datetime.fromisoformat(
                ev['finish_time'])
            out[ev['event']] = (start, end)
    return out
