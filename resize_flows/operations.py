"""The handle of a started operation, its flow run here or posted.

:func:`start` stores an operation's flow, starts it in the records, and
runs it: in a thread of this process (an :class:`Operation`, noted in
the registry of running operations until its flow ends), here to its end,
or as a job on the jobboard for a conductor (a :class:`PostedOperation`).
The API (:mod:`resize_flows.api`) builds on it; this module knows nothing
of callers: it is told how to show an error to the one who asked.
"""
import logging
import threading
import time

from resize_flows.conf import CONF
from resize_flows import engine
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows import leases
from resize_flows.persistence import repository
from resize_flows.testing import faults

LOG = logging.getLogger(__name__)
#: The API's log of what a caller who is not an admin is not shown
#: (:data:`resize_flows.api.context.DETAILS_LOG`).
DETAILS_LOG = logging.getLogger('resize_flows.api.details')


def _as_is(error):
    return error


class Operation:
    """A started resize, migration, confirm or revert.

    Its ids are known at once: ``operation``, ``instance_uuid``,
    ``migration_uuid``, ``flow_id``, ``request_id``. Its flow runs in a
    thread of this process (which holds the flow's lease while it runs);
    :meth:`wait` blocks until it has ended and raises the error that
    undid it. ``migration`` reads the migration's current record, so
    polling it shows the progress (``pre-migrating`` ... ``finished``).

    ``op['migration']``, ``op['flow_id']``, ``op['flow_state']`` read as
    the dict that operations returned before they could run in the
    background.

    ``caller`` is who asked; ``shown`` turns an error into what that
    caller may see (as it is, by default).
    """

    def __init__(self, operation, instance_uuid, migration_uuid, flow_id,
                 request_id, caller=None, shown=None):
        self.operation = operation
        self.instance_uuid = instance_uuid
        self.migration_uuid = migration_uuid
        self.flow_id = flow_id
        self.request_id = request_id
        self.flow_state = None
        self.error = None
        self.caller = caller
        self._shown = shown or _as_is
        #: The migration record when the flow was started in a thread.
        self.started_migration = None
        self._done = threading.Event()
        self._thread = None

    def __repr__(self):
        return '<Operation %s of %s: migration %s, flow %s, %s>' % (
            self.operation, self.instance_uuid, self.migration_uuid,
            self.flow_id, self.flow_state or 'running')

    def _run(self, handle, listeners):
        try:
            self.flow_state = engine.run(handle, listeners)
        except BaseException as e:      # SimulatedCrash too: give it back
            self.error = self._shown(e)
            try:
                self.flow_state = handle.engine.storage.get_flow_state()
            except Exception:
                pass
            if self._thread is not None and isinstance(e, Exception):
                # Its details are not for a caller who is not an admin.
                log = (LOG if self.error is e else DETAILS_LOG)
                log.warning('%s of %s failed: %s', self.operation,
                            self.instance_uuid, e)
        finally:
            self._done.set()
            RUNNING.discard(self)

    def _start_thread(self, handle, listeners):
        self._thread = threading.Thread(
            target=self._run, args=(handle, listeners),
            name='%s-%s' % (self.operation, self.flow_id))
        RUNNING.add(self)
        self._thread.start()

    def done(self):
        """Whether the flow has ended (finished or undone)."""
        return self._done.is_set()

    def wait(self, timeout=None):
        """Block until the flow has ended; return this operation. Raises
        the error of a flow that failed and was undone, and TimeoutError
        when ``timeout`` seconds pass first (the flow goes on)."""
        if not self._done.wait(timeout):
            raise TimeoutError('%r still running after %ss' % (self,
                                                               timeout))
        if self.error is not None:
            raise self.error
        return self

    @property
    def migration(self):
        return repository.migration_get(self.migration_uuid)

    def as_dict(self):
        return {'operation': self.operation,
                'instance_uuid': self.instance_uuid,
                'migration_uuid': self.migration_uuid,
                'flow_id': self.flow_id, 'request_id': self.request_id,
                'flow_state': self.flow_state, 'migration': self.migration}

    def __getitem__(self, key):
        if key == 'migration':
            return self.migration
        return self.as_dict()[key]


class PostedOperation(Operation):
    """An operation posted as a job on the jobboard (``[jobboard]/
    enabled``): a conductor runs its flow. :meth:`wait` and :meth:`done`
    follow the flow in the flow log; a flow that failed and was undone
    raises :class:`~resize_flows.exception.OperationFailed` with the
    failed task's error as text."""

    def __init__(self, *args, job_uuid=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.job_uuid = job_uuid

    def _poll(self):
        if self._done.is_set():
            return True
        brief = flowstatus.flow_brief(self.flow_id)
        if brief is None:
            return False
        self.flow_state = brief['state']
        if brief['status'] in (flowstatus.FINISHED, flowstatus.ROLLED_BACK,
                               flowstatus.STUCK):
            if brief['status'] != flowstatus.FINISHED:
                failed = exception.OperationFailed(
                    operation=self.operation, flow_id=self.flow_id,
                    state=brief['status'],
                    reason=flowstatus.flow_failure(self.flow_id))
                self.error = self._shown(failed)
            self._done.set()
            return True
        return False

    def done(self):
        return self._poll()

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._poll():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError('%r still running after %ss' % (
                    self, timeout))
            time.sleep(CONF.jobboard.wait_poll_interval)
        if self.error is not None:
            raise self.error
        return self


class Running:
    """The operations of this process whose flows run in its threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._ops = set()

    def add(self, op):
        with self._lock:
            self._ops.add(op)

    def discard(self, op):
        with self._lock:
            self._ops.discard(op)

    def list(self):
        with self._lock:
            return list(self._ops)

    def wait_all(self, timeout=None):
        for op in self.list():
            op._done.wait(timeout)


#: This process's running operations.
RUNNING = Running()


def running_operations():
    """Operations of this process whose flows are still running."""
    return RUNNING.list()


def wait_all(timeout=None):
    """Wait for every operation this process started in the background
    (e.g. before it exits, or a test ends). Their errors are not raised:
    each is on its :class:`Operation`."""
    RUNNING.wait_all(timeout)


def start(operation, store, inst, migration_uuid, records, listeners,
          wait, caller=None, shown=None):
    """Store the operation's flow (``store``: its migration, instance and
    request ids), start it in the records with ``records(flow_id)`` (a
    compare-and-swap that may refuse, and then the stored flow is
    discarded and the refusal raised), and run the flow: posted on the
    jobboard when it is enabled, else in a thread of this process, or
    here to its end when ``wait``."""
    ids = dict(instance_uuid=inst['uuid'], migration_uuid=migration_uuid,
               request_id=store['request_id'], caller=caller, shown=shown)
    posting = jobboard.enabled()
    if posting:
        jobboard.check()        # unreachable: refused, nothing changed
    handle = engine.create(operation, store, inst['uuid'], migration_uuid,
                           project_id=inst['project_id'])
    try:
        faults.window('flow-stored')
        records(handle.flow_id)
    except Exception:
        engine.discard(handle)
        raise
    except BaseException:       # SimulatedCrash too: the flow stays stored,
        handle.close()          # as a dead process leaves it
        raise
    if posting:
        handle.close()
        try:
            job_uuid = jobboard.post_flow(handle.flow_id, dict(handle.meta))
        except Exception as e:
            # Run here, as without a jobboard, so that the started
            # operation still ends.
            LOG.error('could not post flow %s on the jobboard (%s); running '
                      'it in this process', handle.flow_id, e)
            handle = _take_back(handle.flow_id)
        else:
            op = PostedOperation(operation, flow_id=handle.flow_id,
                                 job_uuid=job_uuid, **ids)
            return op.wait() if wait else op
    op = Operation(operation, flow_id=handle.flow_id, **ids)
    if wait:
        op._run(handle, listeners)
        return op.wait()
    # What the caller is told the operation started as, before the flow
    # moves it on.
    op.started_migration = repository.migration_get(migration_uuid)
    op._start_thread(handle, listeners)
    return op


def _take_back(flow_id):
    """A flow whose job could not be posted, taken again by this process
    (its lease, and the flow loaded afresh) to run here."""
    return engine.load(flow_id, leases.Lease(flow_id).acquire())
