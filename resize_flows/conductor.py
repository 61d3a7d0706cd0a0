"""The conductor: a long-running worker that runs posted operations.

A ``resize-flows conductor`` process claims the jobs that the API posts
on the jobboard (:mod:`resize_flows.jobboard`) and runs each job's flow
from the flow log, as :func:`recovery.resume` does: a flow never run
starts, an interrupted one goes on where it stopped, an ended one is only
consumed. It also runs the API's periodic confirm of expired moves.

TaskFlow's Redis jobboard alone keeps a dead conductor's claim forever
(no expiry) or, with an expiry, lets a second conductor run a task the
first is still running. So here:

- a conductor claims with ``[jobboard]/claim_expiry`` and extends its
  claims every quarter of it from a thread of its own (the way Octavia
  keeps its amphora flows' claims), so a live conductor keeps its jobs and
  a dead one's run out;
- it runs each flow under the flow's lease (``[flows]/lease_seconds``),
  whose fencing token makes the flow log refuse the writes of a conductor
  that lost the flow (``exception.FlowFenced``): that conductor stops
  working on it at once and leaves the job to the new holder.

A conductor announces itself on the board (refreshed with its claims),
for ``conductor list`` and ``job list``.
"""
import contextlib
import json
import logging
import os
import socket
import threading
import time

from taskflow.conductors.backends import impl_nonblocking
from taskflow.jobs.backends import impl_redis
from taskflow import states as tf_states
from taskflow.utils import misc as tf_misc

from resize_flows import api
from resize_flows import conf as rf_conf
from resize_flows.conf import CONF
from resize_flows import engine
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows.persistence import attempts
from resize_flows.persistence import flowlog
from resize_flows import recovery
from resize_flows import timeutils

LOG = logging.getLogger(__name__)


# KEYS[1]: a job's owner key; ARGV: our encoded name, the expiry in ms.
_EXTEND_IF_OWNER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class _ClaimingBoard:
    """The jobboard as TaskFlow's conductor sees it: every claim with an
    expiry, and noted so that it is extended while held."""

    def __init__(self, board, expiry):
        self._board = board
        self._expiry = expiry
        self._lock = threading.Lock()
        #: job uuid -> (job, flow id, claimed at)
        self.held = {}

    def __getattr__(self, name):
        return getattr(self._board, name)

    def claim(self, job, who):
        self._board.claim(job, who, expiry=self._expiry)
        with self._lock:
            self.held[job.uuid] = (job, (job.details or {}).get('flow_uuid'),
                                   time.time())

    def _forget(self, job):
        with self._lock:
            self.held.pop(job.uuid, None)

    def consume(self, job, who):
        try:
            return self._board.consume(job, who)
        finally:
            self._forget(job)

    def abandon(self, job, who):
        try:
            return self._board.abandon(job, who)
        finally:
            self._forget(job)

    def trash(self, job, who):
        try:
            return self._board.trash(job, who)
        finally:
            self._forget(job)

    def jobs_held(self):
        with self._lock:
            return list(self.held.values())


class _TaskFlowConductor(impl_nonblocking.NonBlockingConductor):
    """TaskFlow's conductor (its claim, consume and abandon loop, each job
    in a thread of a pool of ``[jobboard]/simultaneous_jobs``), running
    each job's flow the way resize-flows runs flows."""

    def __init__(self, owner, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._owner = owner

    # TaskFlow's hooks (_engine_from_job, _listeners_from_job) suit a job
    # whose engine TaskFlow loads from the job's book, compiles and runs,
    # consuming the job unless the run failed on storage or execution.
    # Here recovery.run_job runs a job's flow: it first takes the flow's
    # lease (whose fencing token the flow log backend of the engine
    # carries), decides from the stored atom states whether to start,
    # resume or leave the flow, and Conductor.dispatch gives the job back
    # or consumes it by rules of its own (fenced or busy: back; undone or
    # stuck: consumed). That fits neither hook, so this private method,
    # the one call TaskFlow's executor makes per claimed job, is replaced.
    # It raising makes TaskFlow trash the job (_on_job_done): that is how
    # a job the conductors gave up on (GaveUp) leaves the board.
    def _dispatch_job(self, job):
        return self._owner.dispatch(job)


class GaveUp(Exception):
    """The conductors gave up on a job ([jobboard]/max_attempts): raised
    out of a dispatch so that TaskFlow's conductor trashes the job."""


def _one_line(error):
    """An error as one line: ``Class: message``."""
    text = ' '.join(str(error).split())
    return '%s: %s' % (type(error).__name__, text) if text else \
        type(error).__name__


class Conductor:
    """A long-running worker: claims jobs, extends its claims, runs their
    flows with the shared flow log, and runs the auto-confirm periodic
    task. :meth:`run` until :meth:`stop` (SIGTERM in the CLI), which
    stops claiming, lets the running task end, suspends the flow there and
    gives its job back for another conductor to finish."""

    def __init__(self, name=None, board=None, confirm_interval=60.0):
        rf_conf.validate(CONF)
        self.name = name or jobboard.conductor_name()
        self.expiry = CONF.jobboard.claim_expiry
        self._board = _ClaimingBoard(board or jobboard.connect(), self.expiry)
        self._conductor = _TaskFlowConductor(
            self, self.name, self._board,
            persistence=flowlog.get_backend(), engine=engine.ENGINE_KIND,
            wait_timeout=0.5,
            max_simultaneous_jobs=CONF.jobboard.simultaneous_jobs)
        self._stopping = threading.Event()
        self._engines = set()
        self._engines_lock = threading.Lock()
        self._threads = []
        self._confirmer = None
        self._confirm_interval = confirm_interval
        self.started_at = time.time()
        self.outcomes = []
        self._label = self.name

    # -- running flows -------------------------------------------------------

    def _track(self, flow_engine):
        conductor = self

        class Tracking:
            def __enter__(self):
                with conductor._engines_lock:
                    conductor._engines.add(flow_engine)
                return self

            def __exit__(self, *exc):
                with conductor._engines_lock:
                    conductor._engines.discard(flow_engine)
        return Tracking()

    def dispatch(self, job):
        """Run a claimed job's flow; True to consume the job (its flow
        ended, or there is nothing to run), False to give it back."""
        flow_id = (job.details or {}).get('flow_uuid')
        if not flow_id:
            LOG.error('job %s names no flow: consumed', job)
            return True
        if self._stopping.is_set():
            return self._done(job, flow_id, 'stopping', False)
        # A job runs in a thread of the pool: named after the conductor's
        # own thread and the flow, for the logs.
        threading.current_thread().name = '%s:%s' % (self._label, flow_id)
        try:
            self._begin_attempt(job, flow_id)
        except GaveUp:
            raise
        except Exception:
            # Not counted (the database did not answer): given back, never
            # trashed (an error out of here would trash the job).
            LOG.exception('could not count the attempt at flow %s; job %s '
                          'given back', flow_id, job.uuid)
            self._stopping.wait(1.0)
            return self._done(job, flow_id, 'error', False)
        LOG.info('conductor %s runs flow %s (job %s)', self.name, flow_id,
                 job.uuid)
        try:
            state = recovery.run_job(flow_id, listeners=(self._track,),
                                     owner=self.name)
        except exception.FlowNotFound:
            LOG.error('flow %s of job %s is not in the flow log: consumed',
                      flow_id, job.uuid)
            return self._done(job, flow_id, 'missing', True)
        except exception.FlowBusy as e:
            # Its lease is still live: the conductor that held it may be
            # stalled rather than dead. Give the job back; whoever claims
            # it next tries again (this claim spent no attempt).
            LOG.info('flow %s is busy: %s', flow_id, e)
            self._end_attempt(flow_id, spent=False)
            self._stopping.wait(1.0)
            return self._done(job, flow_id, 'busy', False)
        except Exception as e:
            if engine.is_fenced(e):
                LOG.warning('conductor %s lost flow %s to another '
                            'conductor; stopped working on it', self.name,
                            flow_id)
                self._end_attempt(flow_id, spent=False)
                return self._done(job, flow_id, 'fenced', False)
            brief = flowstatus.flow_brief(flow_id)
            state = brief and brief['state']
            if state in (tf_states.REVERTED, tf_states.SUCCESS) or (
                    brief and brief['status'] in (flowstatus.STUCK,
                                                  flowstatus.ABANDONED)):
                # Undone (the operation failed), stuck for an operator, or
                # abandoned by one: either way the job is over.
                LOG.warning('flow %s ended %s: %s', flow_id, state, e)
                self._end_attempt(flow_id)
                return self._done(job, flow_id, state, True)
            LOG.exception('flow %s of job %s stopped; job given back',
                          flow_id, job.uuid)
            self._done(job, flow_id, 'error', False)
            reason = self._end_attempt(
                flow_id, error=_one_line(e),
                max_attempts=CONF.jobboard.max_attempts)
            if reason is not None:
                self._give_up(job, flow_id, reason)
            return False
        if state == tf_states.SUSPENDED:
            # Stopped between two tasks (this conductor is stopping): the
            # flow did not fail, the attempt is not spent.
            self._end_attempt(flow_id, spent=False)
            return self._done(job, flow_id, state, False)
        self._end_attempt(flow_id)
        return self._done(job, flow_id, state, True)

    # -- attempts ------------------------------------------------------------

    def _begin_attempt(self, job, flow_id):
        """Count this claim as an attempt (persistence/attempts.py), or
        give the job up when [jobboard]/max_attempts were spent."""
        verdict, what = attempts.begin(flow_id, job.uuid, self.name,
                                       CONF.jobboard.max_attempts)
        if verdict == attempts.GIVE_UP:
            self._done(job, flow_id, 'gave up', False)
            self._give_up(job, flow_id, what)
        LOG.info('conductor %s: attempt %d of %d at flow %s', self.name,
                 what, CONF.jobboard.max_attempts, flow_id)

    def _end_attempt(self, flow_id, **kwargs):
        try:
            return attempts.end(flow_id, self.name, **kwargs)
        except Exception:
            LOG.exception('could not note the end of the attempt at flow %s',
                          flow_id)
            return None

    def _give_up(self, job, flow_id, reason):
        LOG.error('conductor %s: flow %s %s; its job %s goes to the '
                  'trash', self.name, flow_id, reason, job.uuid)
        raise GaveUp('flow %s: %s' % (flow_id, reason))

    def _done(self, job, flow_id, outcome, consume):
        self.outcomes.append((flow_id, outcome))
        return consume

    # -- keeping claims ----------------------------------------------------

    def _announce(self):
        client = self._client
        if client is None:
            return
        record = {
            'name': self.name, 'host': socket.gethostname(),
            'pid': os.getpid(),
            'started_at': timeutils.iso(self.started_at),
            'seen_at': timeutils.iso(time.time()),
            'flows': [flow_id for _job, flow_id, _t
                      in self._board.jobs_held()],
        }
        client.set(jobboard.conductor_key(self.name), json.dumps(record),
                   ex=max(self.expiry, 2))

    def extend_claims(self):
        """Extend every claim this conductor still holds; announce it."""
        for job, flow_id, _since in self._board.jobs_held():
            try:
                if not self._extend(job):
                    LOG.error('conductor %s lost its claim on job %s (flow '
                              '%s) to %s', self.name, job.uuid, flow_id,
                              self._board.find_owner(job))
            except Exception:
                LOG.exception('could not extend the claim on job %s',
                              job.uuid)
        try:
            self._announce()
        except Exception:
            LOG.exception('could not announce conductor %s', self.name)

    def _extend(self, job):
        """Extend the claim on ``job`` if this conductor still owns it;
        False if it does not. On Redis the check and the extension are one
        script, so a claim another conductor took in between is never
        extended (TaskFlow's extend_expiry extends whoever owns it)."""
        board = self._board._board
        if isinstance(board, impl_redis.RedisJobBoard):
            # The board's own connection (private: TaskFlow offers no
            # owner-checked extension, and the board given may not be the
            # one the configuration names); the owner encoded as the board
            # stores it.
            result = board._client.eval(
                _EXTEND_IF_OWNER, 1, job.owner_key,
                tf_misc.binary_encode(self.name), int(self.expiry * 1000))
            return result == 1
        if self._board.find_owner(job) != self.name:
            return False
        job.extend_expiry(self.expiry)
        return True

    def _extend_loop(self):
        while not self._done_event.wait(self.expiry / 4.0):
            self.extend_claims()

    # -- life -----------------------------------------------------------------

    def run(self, max_dispatches=None):
        """Claim and run jobs until :meth:`stop` (or ``max_dispatches``)."""
        self._done_event = threading.Event()
        self._label = threading.current_thread().name
        try:
            self._client = jobboard.redis_client()
        except ImportError:
            self._client = None
        self.extend_claims()
        extender = threading.Thread(target=self._extend_loop,
                                    name='claims-%s' % self.name,
                                    daemon=True)
        extender.start()
        if CONF.compute.resize_confirm_window:
            self._confirmer = api.PeriodicConfirmer(
                interval=min(self._confirm_interval,
                             CONF.compute.resize_confirm_window)).start()
        LOG.info('conductor %s claims jobs on board %s (%s)', self.name,
                 CONF.jobboard.board_name, jobboard.mask_url())
        try:
            self._conductor.run(max_dispatches=max_dispatches)
        finally:
            if self._confirmer is not None:
                self._confirmer.stop()
            self._done_event.set()
            extender.join()
            with contextlib.suppress(Exception):
                if self._client is not None:
                    self._client.delete(jobboard.conductor_key(self.name))
            with contextlib.suppress(Exception):
                self._board.close()
            LOG.info('conductor %s stopped', self.name)

    def stop(self):
        """Stop claiming; the flows running suspend after their current
        task and their jobs are given back."""
        self._stopping.set()
        with self._engines_lock:
            engines = list(self._engines)
        for flow_engine in engines:
            with contextlib.suppress(Exception):
                flow_engine.suspend()
        self._conductor.stop()
