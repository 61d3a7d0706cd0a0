"""Drain a host: disable it and cold-migrate every server off it.

:func:`drain_host` is the operator's way to empty a host for
maintenance. Each server goes by the normal cold migration
(:func:`resize_flows.api.moves.migrate`: its checks, its flow, its
instance action, through the conductors when the jobboard is on), at
most ``parallel`` at a time, and is confirmed unless told not to. It
reports one row per server and can be run again: it continues where it
stopped.
"""
import logging
import threading
import time
from concurrent import futures

from resize_flows.api import context
from resize_flows.api import flows as api_flows
from resize_flows.api import moves
from resize_flows import flowstatus
from resize_flows.persistence import hostflags
from resize_flows.persistence import instance_actions
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import states
from resize_flows import validation

LOG = logging.getLogger(__name__)

#: The reason a drain records on the host it disables.
DRAIN_REASON = 'drained by host drain'
#: The instance action event a drain adds to each move it makes.
DRAIN_EVENT = 'host_drain'

MOVED = 'moved'
CONFIRMED = 'confirmed'
FAILED = 'failed'
SKIPPED = 'skipped'
STATUSES = (MOVED, CONFIRMED, FAILED, SKIPPED)

#: How often the start of a move is polled for its destination claim.
_CLAIM_POLL = 0.1
#: The operations of a drain's flows: its moves, and their confirms.
_MOVES = ('migrate', 'resize')
_CONFIRM = 'confirm_resize'


def one_line(error):
    """An error as one line: its class and the first line of its text."""
    text = str(error).strip().splitlines()
    return '%s: %s' % (type(error).__name__, text[0] if text else '')


@context.tenant_facing
def drain_host(ctx, host, parallel=1, confirm=True):
    """Disable ``host`` and cold-migrate every server off it,
    ``parallel`` at a time, each confirmed once it has moved unless
    ``confirm`` is false.

    Refused at once, changing nothing: PolicyNotAuthorized (403, admin
    only by default), InvalidInput (``parallel`` not a whole number >= 1,
    a bad host name), HostNotFound.

    The host is disabled first (a host already disabled keeps its
    reason), so the scheduler sends nothing to it meanwhile. Then:

    1. Moves off the host that finished and wait for a confirm (an
       earlier drain run with ``confirm=False``, or one that stopped) are
       confirmed (with ``confirm``) or reported ``moved``.
    2. Moves off the host and their confirms that were interrupted (the
       process that ran them died, an earlier drain run say, and nobody
       holds their flow) are resumed, a move in one of the ``parallel``
       places; a move that then finishes is confirmed as in 3, one that
       its resume undid (it was being undone) is reported ``failed`` and
       the next run moves it again.
    3. Every ACTIVE or SHUTOFF server on the host is migrated (the
       scheduler chooses, alternates included); the next move starts
       once the one before has claimed its destination, so that parallel
       moves spread over the hosts by free capacity. Each is confirmed
       once it has finished, beside the next moves (a confirm does not
       take one of the ``parallel`` places). A move that fails is
       undone by its flow, reported ``failed`` with the reason, and tried
       again by the next run.
    4. Servers in error, busy (a task under way: the reason names its
       flow, and says when that flow is interrupted and not a drain's to
       resume) or RESIZED onto this host (waiting for their own confirm
       or revert) are reported ``skipped`` with the reason.

    Returns a list of rows, one per server, in the order of the host's
    servers: {'server' (uuid), 'name', 'from', 'to', 'status' (one of
    :data:`STATUSES`), 'reason' (one line or None), 'seconds'}.
    """
    policy.authorize(ctx, policy.HOST_DRAIN)
    validation.check_whole('parallel', parallel, minimum=1)
    validation.check_name('host', host)
    repository.host_get(host)
    hostflags.host_set_disabled(host, True, DRAIN_REASON, keep_reason=True)
    LOG.info('drain of host %s (request %s): host disabled, %d at a time',
             host, ctx.request_id, parallel)

    drain = _Drain(ctx, host, parallel)
    try:
        _plan(drain, host, confirm)
    finally:
        rows = drain.finish()
    for row in rows:
        LOG.info('drain of host %s: server %s %s%s', host, row['server'],
                 row['status'], ' (%s)' % row['reason']
                 if row['reason'] else '')
    return rows


def _plan(drain, host, confirm):
    interrupted = {}                   # instance uuid: its newest such flow
    for flow in flowstatus.list_flows(status=flowstatus.INTERRUPTED):
        interrupted.setdefault(flow['instance_uuid'], flow)
    for mig in repository.migration_list(status=states.MIGRATION_FINISHED):
        if mig['source_compute'] != host:
            continue
        inst = repository.instance_get(mig['instance_uuid'])
        if _resumable(interrupted.get(inst['uuid']), mig) == _CONFIRM:
            continue                   # its confirm was cut off: below
        row = drain.add(inst, to=mig['dest_compute'])
        if confirm:
            drain.confirm_later(inst, row, time.monotonic())
        else:
            row.update(status=MOVED, reason='waits for its confirm')
    for flow in interrupted.values():
        mig = _migration(flow)
        if mig is None or mig['source_compute'] != host or \
                _resumable(flow, mig) is None:
            continue
        inst = repository.instance_get(mig['instance_uuid'])
        row = drain.add(inst, to=mig['dest_compute'])
        drain.resume_later(inst, row, flow, confirm)
    for inst in repository.instance_list(host=host):
        if drain.has(inst):
            continue
        row = drain.add(inst)
        skip = _why_skipped(inst, interrupted.get(inst['uuid']))
        if skip:
            row.update(status=SKIPPED, reason=skip)
        else:
            drain.move_later(inst, row, confirm)


def _migration(flow):
    if not flow.get('migration_uuid'):
        return None
    try:
        return repository.migration_get(flow['migration_uuid'])
    except Exception:          # gone (purged): not a drain's to resume
        return None


def _resumable(flow, mig):
    """The operation of ``flow`` when it is an interrupted move of
    migration ``mig`` or its confirm, which a drain resumes; else None."""
    if flow is None or flow.get('migration_uuid') != mig['uuid']:
        return None
    if flow['operation'] in _MOVES or flow['operation'] == _CONFIRM:
        return flow['operation']
    return None


def _why_skipped(inst, interrupted=None):
    if inst['vm_state'] == states.ERROR:
        return 'in error: reset or rebuild it first'
    if inst['task_state'] is not None:
        if interrupted is not None:
            return ('busy: task_state %s; its %s flow %s is interrupted '
                    '(flow resume or flow rollback it)' % (
                        inst['task_state'], interrupted['operation'],
                        interrupted['flow_id']))
        return 'busy: task_state %s' % inst['task_state']
    if inst['vm_state'] == states.RESIZED:
        return 'resized onto this host: confirm or revert it first'
    if inst['vm_state'] not in (states.ACTIVE, states.STOPPED):
        return 'vm_state %s cannot be migrated' % inst['vm_state']
    return None


class _Drain:
    """The moves of one drain, ``parallel`` at a time, and their confirms
    (as many at a time: a confirm is no move, so it does not hold up the
    next one)."""

    def __init__(self, ctx, host, parallel):
        self.ctx, self.host = ctx, host
        self.rows = []
        self.moves = futures.ThreadPoolExecutor(
            max_workers=parallel, thread_name_prefix='drain-%s' % host)
        self.confirms = futures.ThreadPoolExecutor(
            max_workers=parallel,
            thread_name_prefix='drain-confirm-%s' % host)
        self.moving = []
        # The next move starts once the one before has claimed.
        self.gate = threading.Lock()

    def has(self, inst):
        return any(row['server'] == inst['uuid'] for row in self.rows)

    def add(self, inst, to=None):
        row = {'server': inst['uuid'], 'name': inst['name'],
               'from': self.host, 'to': to, 'status': None, 'reason': None,
               'seconds': 0.0}
        self.rows.append(row)
        return row

    def move_later(self, inst, row, confirm):
        self.moving.append(self.moves.submit(self._move, inst, row,
                                             confirm))

    def resume_later(self, inst, row, flow, confirm):
        if flow['operation'] == _CONFIRM:
            self.confirms.submit(self._resume, inst, row, flow, confirm)
        else:
            self.moving.append(self.moves.submit(self._resume, inst, row,
                                                 flow, confirm))

    def confirm_later(self, inst, row, started):
        self.confirms.submit(self._confirm, inst, row, started)

    def finish(self):
        """Wait for every move, then every confirm; the rows."""
        futures.wait(self.moving)
        self.moves.shutdown()
        self.confirms.shutdown()
        return self.rows

    def _failed(self, inst, row, started, error):
        LOG.warning('drain: server %s failed: %s', inst['uuid'], error)
        row.update(status=FAILED, reason=one_line(error),
                   seconds=round(time.monotonic() - started, 1))

    def _move(self, inst, row, confirm):
        started = time.monotonic()
        op = None
        try:
            with self.gate:
                op = moves.migrate(self.ctx, inst['uuid'], wait=False)
                _wait_claimed(op)
            op.wait()
        except Exception as e:      # one server's failure is its row's
            if op is not None:
                row['to'] = _dest_of(op)
                _record_event(self.ctx, inst, self.host, 'Error',
                              one_line(e))
            return self._failed(inst, row, started, e)
        row.update(to=_dest_of(op), status=MOVED,
                   seconds=round(time.monotonic() - started, 1))
        _record_event(self.ctx, inst, self.host, 'Success')
        if confirm:
            self.confirm_later(inst, row, started)

    def _resume(self, inst, row, flow, confirm):
        """Resume the interrupted ``flow`` (a move of ``inst`` off the
        host, or its confirm) to its end; then as a move or a confirm
        that ran here."""
        started = time.monotonic()
        try:
            api_flows.resume_flow(self.ctx, flow['flow_id'])
        except Exception as e:
            return self._failed(inst, row, started, e)
        mig = repository.migration_get(flow['migration_uuid'])
        seconds = round(time.monotonic() - started, 1)
        resumed = 'resumed its interrupted %s flow %s' % (
            flow['operation'], flow['flow_id'])
        if mig['status'] == states.MIGRATION_CONFIRMED:
            row.update(status=CONFIRMED, reason=resumed, seconds=seconds)
        elif mig['status'] == states.MIGRATION_FINISHED:
            row.update(status=MOVED, reason=resumed, seconds=seconds)
            if confirm:
                self.confirm_later(inst, row, started)
            else:
                row['reason'] += '; waits for its confirm'
        else:
            reason = ('its interrupted %s flow %s was being undone: '
                      'resumed, it left the migration %s; the next run '
                      'moves it again' % (flow['operation'],
                                          flow['flow_id'], mig['status']))
            row.update(to=None, status=FAILED, reason=reason,
                       seconds=seconds)

    def _confirm(self, inst, row, started):
        try:
            moves.confirm_resize(self.ctx, inst['uuid'], wait=True)
        except Exception as e:
            return self._failed(inst, row, started, e)
        row.update(status=CONFIRMED,
                   seconds=round(time.monotonic() - started, 1))


def _dest_of(op):
    try:
        return op.migration['dest_compute']
    except Exception:
        return None


def _wait_claimed(op):
    """Until the move has claimed its destination (or ended), so that the
    next move's scheduler sees that claim."""
    while not op.done():
        if op.migration['dest_compute']:
            return
        time.sleep(_CLAIM_POLL)


def _record_event(ctx, inst, host, result, traceback=None):
    """A ``host_drain`` event on the move's instance action: which drain
    (the request id is the drain's) made it. Best effort."""
    try:
        instance_actions.event_start(inst['uuid'], ctx.request_id,
                                     DRAIN_EVENT, host=host)
        instance_actions.event_finish(inst['uuid'], ctx.request_id,
                                      DRAIN_EVENT, result,
                                      traceback=traceback)
    except Exception:
        LOG.exception('could not record the drain event of %s',
                      inst['uuid'])
