"""Operations as jobs on TaskFlow's jobboard, run by conductors.

With ``[jobboard]/enabled``, the API stores an operation's flow in the flow
log and starts it in the records as always, then posts a job naming the
flow (its logbook, and the flow id in the job's details) on TaskFlow's
Redis jobboard, and returns. A ``resize-flows conductor`` process claims
the job and runs the flow from the flow log, as :func:`engine.resume`
does: a flow never run starts, an interrupted one goes on where it
stopped, an ended one is only consumed.

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

A conductor also announces itself on the board (a key that lives as long
as a claim, refreshed with the claims), so that ``conductor list`` tells
who is alive and ``job list`` who holds what since when.
"""
import contextlib
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
import uuid as uuidlib

from taskflow.conductors.backends import impl_nonblocking
from taskflow import exceptions as tf_exc
from taskflow.jobs import backends as job_backends
from taskflow.jobs.backends import impl_redis
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states

from resize_flows import conf as rf_conf
from resize_flows.conf import CONF
from resize_flows import engine
from resize_flows import exception
from resize_flows.persistence import flowlog
from resize_flows.persistence import repository

LOG = logging.getLogger(__name__)

#: Key prefix of the conductors' announcements (beside TaskFlow's keys).
_CONDUCTOR_KEY = 'resize-flows:%s:conductor:'


def enabled():
    return CONF.jobboard.enabled


#: What a secret is shown as.
MASK = '***'
#: Query parameters of a back-end URL whose values are secrets.
_SECRET_PARAMS = ('password', 'passwd', 'pass', 'secret', 'token',
                  'sasl_password', 'ssl_keyfile_password')


def mask_url(url=None):
    """``url`` (default ``[jobboard]/backend_url``) with its credentials
    masked, for every message and log line: the password of
    ``redis://[USER]:PASSWORD@HOST`` (a user part without a password too,
    as it may be one) and secret query parameters."""
    url = url or CONF.jobboard.backend_url or ''
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if '@' in netloc:
        userinfo, _at, hostport = netloc.rpartition('@')
        if ':' in userinfo:
            userinfo = '%s:%s' % (userinfo.split(':', 1)[0], MASK)
        else:
            userinfo = MASK
        netloc = '%s@%s' % (userinfo, hostport)
    query = parts.query
    if query:
        query = '&'.join(
            '%s=%s' % (key, MASK) if key.lower() in _SECRET_PARAMS
            else pair
            for pair in query.split('&')
            for key in [pair.split('=', 1)[0]])
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query,
                                    parts.fragment))


def _secrets(url):
    """The secret strings of a back-end URL, as written and decoded."""
    try:
        parts = urllib.parse.urlsplit(url or '')
    except ValueError:
        return [url] if url else []
    found = []
    if '@' in parts.netloc:
        userinfo = parts.netloc.rpartition('@')[0]
        found.append(userinfo.split(':', 1)[1] if ':' in userinfo
                     else userinfo)
    for key, value in urllib.parse.parse_qsl(parts.query):
        if key.lower() in _SECRET_PARAMS:
            found.append(value)
    out = []
    for secret in found:
        out += [secret, urllib.parse.unquote(secret)]
    return sorted({s for s in out if s}, key=len, reverse=True)


def mask_text(text, url=None):
    """``text`` with the back-end URL and each of its secrets masked."""
    url = url or CONF.jobboard.backend_url or ''
    text = str(text)
    if url:
        text = text.replace(url, mask_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, MASK)
    return text


def board_conf(url=None, board_name=None):
    """TaskFlow's jobboard configuration for a back-end URL:
    ``redis://[USER:PASSWORD@]HOST[:PORT][/DB][?ssl=true]`` (TaskFlow's
    Redis board; its keys under the board's name), or
    ``zookeeper://HOST:PORT[,HOST:PORT]`` and ``etcd://HOST:PORT`` for
    TaskFlow's own back ends of those names (not tested here)."""
    url = url or CONF.jobboard.backend_url
    board_name = board_name or CONF.jobboard.board_name
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    if parts.scheme in ('redis', 'rediss'):
        conf = {'board': 'redis', 'host': parts.hostname or '127.0.0.1',
                'port': parts.port or 6379, 'namespace': board_name}
        if parts.username:
            conf['username'] = urllib.parse.unquote(parts.username)
        if parts.password:
            conf['password'] = urllib.parse.unquote(parts.password)
        if parts.path.strip('/'):
            conf['db'] = int(parts.path.strip('/'))
        if parts.scheme == 'rediss':
            conf['ssl'] = True
    elif parts.scheme == 'zookeeper':
        conf = {'board': 'zookeeper', 'hosts': parts.netloc,
                'path': '/taskflow/jobs/%s' % board_name}
    elif parts.scheme == 'etcd':
        conf = {'board': 'etcd', 'host': parts.hostname or '127.0.0.1',
                'port': parts.port or 2379,
                'path': '/taskflow/jobs/%s' % board_name}
    else:
        raise exception.InvalidInput(
            reason='[jobboard]/backend_url %r: the scheme must be redis, '
                   'rediss, zookeeper or etcd' % mask_url(url))
    conf.update(query)
    return conf


def _unreachable(url, error):
    """JobboardUnavailable, its URL and reason with the credentials
    masked."""
    return exception.JobboardUnavailable(url=mask_url(url),
                                         reason=mask_text(error, url))


def connect(url=None, board_name=None):
    """A connected jobboard (close it when done)."""
    url = url or CONF.jobboard.backend_url
    conf = board_conf(url, board_name)
    try:
        board = job_backends.fetch(board_name or CONF.jobboard.board_name,
                                   conf, persistence=flowlog.get_backend())
        board.connect()
    except (tf_exc.JobFailure, ImportError, OSError) as e:
        raise _unreachable(url, e)
    return board


_BOARDS = {}
_BOARDS_LOCK = threading.Lock()


def get_board():
    """This process's connected jobboard for posting and listing."""
    key = (CONF.jobboard.backend_url, CONF.jobboard.board_name)
    with _BOARDS_LOCK:
        board = _BOARDS.get(key)
        if board is None:
            board = _BOARDS[key] = connect()
        return board


def reset():
    with _BOARDS_LOCK:
        for board in _BOARDS.values():
            with contextlib.suppress(Exception):
                board.close()
        _BOARDS.clear()


def check():
    """Raise JobboardUnavailable unless the jobboard answers."""
    try:
        get_board().job_count
    except tf_exc.JobFailure as e:
        raise _unreachable(CONF.jobboard.backend_url, e)


def post_flow(flow_id, meta):
    """Post the job of a stored flow; returns the job's uuid."""
    book_uuid, _detail = engine.find_detail(flow_id)
    book = tf_models.LogBook('%s-%s' % (meta.get('operation'),
                                        meta.get('instance_uuid')),
                             uuid=book_uuid)
    details = {'flow_uuid': flow_id}
    for key in ('operation', 'instance_uuid', 'migration_uuid',
                'request_id'):
        details[key] = meta.get(key)
    try:
        job = get_board().post('%s %s' % (meta.get('operation'),
                                          meta.get('instance_uuid')),
                               book=book, details=details)
    except tf_exc.JobFailure as e:
        raise _unreachable(CONF.jobboard.backend_url, e)
    LOG.info('posted job %s for flow %s', job.uuid, flow_id)
    try:
        # Noted after the post, never before: a flow noted as posted whose
        # job never reached the board would wait for a conductor forever.
        repository.flow_posted(flow_id, job.uuid)
    except Exception:
        # The job is on the board and a conductor will run it; until one
        # does, the flow shows as interrupted instead of queued.
        LOG.exception('could not note job %s in flow %s', job.uuid, flow_id)
    return job.uuid


def remove_job(job_uuid, who):
    """Take an unclaimed job off the board (claim it as ``who``, then
    consume it). True when it was removed; False when it is not there or
    another holder has claimed it (that holder then finds its flow ended
    and consumes the job itself)."""
    board = get_board()
    for job in board.iterjobs(ensure_fresh=True):
        if job.uuid != job_uuid:
            continue
        try:
            # With an expiry: should the consume fail, a conductor takes
            # the job later and only consumes it.
            board.claim(job, who, expiry=CONF.jobboard.claim_expiry)
            board.consume(job, who)
        except (tf_exc.UnclaimableJob, tf_exc.NotFound, tf_exc.JobFailure) \
                as e:
            LOG.info('job %s left on the board: %s', job_uuid, e)
            return False
        return True
    return False


# -- who holds what ----------------------------------------------------------

def _redis_client():
    import redis
    conf = board_conf()
    if conf['board'] != 'redis':
        return None
    kwargs = {k: conf[k] for k in ('host', 'port', 'username', 'password',
                                   'db', 'ssl') if k in conf}
    return redis.Redis(socket_timeout=5, **kwargs)


def list_jobs():
    """Every job on the board: ``job``, ``name``, ``operation``,
    ``instance_uuid``, ``flow_id``, ``state`` (UNCLAIMED, CLAIMED), ``owner``
    and ``since`` (when the owner took the flow's lease), ``posted_at``."""
    board = get_board()
    leases = repository.lease_list()
    out = []
    for job in board.iterjobs(ensure_fresh=True):
        details = job.details or {}
        flow_id = details.get('flow_uuid')
        try:
            state = job.state
            owner = board.find_owner(job) if state == 'CLAIMED' else None
        except (tf_exc.NotFound, tf_exc.JobFailure):
            continue
        lease = leases.get(flow_id)
        since = None
        if lease is not None and owner is not None and \
                lease['owner'] == owner:
            since = lease['acquired_at']
        out.append({
            'job': job.uuid, 'name': job.name,
            'operation': details.get('operation'),
            'instance_uuid': details.get('instance_uuid'),
            'flow_id': flow_id, 'state': state, 'owner': owner,
            'since': since,
            'posted_at': (job.created_on.isoformat(timespec='seconds')
                          if job.created_on else None),
        })
    return out


def list_conductors():
    """The conductors alive on the board: ``name``, ``host``, ``pid``,
    ``started_at``, ``seen_at`` and ``flows`` (flow ids it runs)."""
    client = _redis_client()
    if client is None:
        return []
    prefix = _CONDUCTOR_KEY % CONF.jobboard.board_name
    out = []
    try:
        for key in client.scan_iter(match=prefix + '*'):
            raw = client.get(key)
            if raw:
                out.append(json.loads(raw))
    except Exception as e:
        raise _unreachable(CONF.jobboard.backend_url, e)
    return sorted(out, key=lambda c: c['name'])


def conductor_name():
    """A conductor's name: ``[jobboard]/conductor_name`` (or the host
    name), its process id and a random suffix."""
    return '%s:%d:%s' % (CONF.jobboard.conductor_name or socket.gethostname(),
                         os.getpid(), uuidlib.uuid4().hex[:8])


# -- the conductor -------------------------------------------------------------

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

    def _dispatch_job(self, job):
        return self._owner.dispatch(job)


class Conductor:
    """A long-running worker: claims jobs, extends its claims, runs their
    flows with the shared flow log, and runs the auto-confirm periodic
    task. :meth:`run` until :meth:`stop` (SIGTERM in the CLI), which
    stops claiming, lets the running task end, suspends the flow there and
    gives its job back for another conductor to finish."""

    def __init__(self, name=None, board=None, confirm_interval=60.0):
        rf_conf.validate(CONF)
        self.name = name or conductor_name()
        self.expiry = CONF.jobboard.claim_expiry
        self._board = _ClaimingBoard(board or connect(), self.expiry)
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
        LOG.info('conductor %s runs flow %s (job %s)', self.name, flow_id,
                 job.uuid)
        try:
            state = engine.run_job(flow_id, listeners=(self._track,),
                                   owner=self.name)
        except exception.FlowNotFound:
            LOG.error('flow %s of job %s is not in the flow log: consumed',
                      flow_id, job.uuid)
            return self._done(job, flow_id, 'missing', True)
        except exception.FlowBusy as e:
            # Its lease is still live: the conductor that held it may be
            # stalled rather than dead. Give the job back; whoever claims
            # it next tries again.
            LOG.info('flow %s is busy: %s', flow_id, e)
            self._stopping.wait(1.0)
            return self._done(job, flow_id, 'busy', False)
        except Exception as e:
            if engine.is_fenced(e):
                LOG.warning('conductor %s lost flow %s to another '
                            'conductor; stopped working on it', self.name,
                            flow_id)
                return self._done(job, flow_id, 'fenced', False)
            brief = engine.flow_brief(flow_id)
            state = brief and brief['state']
            if state in (tf_states.REVERTED, tf_states.SUCCESS) or (
                    brief and brief['status'] == engine.STUCK):
                # Undone (the operation failed), or stuck for an operator:
                # either way the job is over.
                LOG.warning('flow %s ended %s: %s', flow_id, state, e)
                return self._done(job, flow_id, state, True)
            LOG.exception('flow %s of job %s stopped; job given back',
                          flow_id, job.uuid)
            return self._done(job, flow_id, 'error', False)
        if state == tf_states.SUSPENDED:
            return self._done(job, flow_id, state, False)
        return self._done(job, flow_id, state, True)

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
            'started_at': _iso(self.started_at), 'seen_at': _iso(time.time()),
            'flows': [flow_id for _job, flow_id, _t
                      in self._board.jobs_held()],
        }
        client.set(_CONDUCTOR_KEY % CONF.jobboard.board_name + self.name,
                   json.dumps(record), ex=max(self.expiry, 2))

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
            result = board._client.eval(
                _EXTEND_IF_OWNER, 1, job.owner_key,
                board._encode_owner(self.name), int(self.expiry * 1000))
            return result == 1
        if self._board.find_owner(job) != self.name:
            return False
        job.extend_expiry(self.expiry)
        return True

    def _extend_loop(self):
        while not self._done_event.wait(self.expiry / 4.0):
            self.extend_claims()

    # -- life ------------------------------------------------------------------

    def run(self, max_dispatches=None):
        """Claim and run jobs until :meth:`stop` (or ``max_dispatches``)."""
        self._done_event = threading.Event()
        self._label = threading.current_thread().name
        try:
            self._client = _redis_client()
        except ImportError:
            self._client = None
        self.extend_claims()
        extender = threading.Thread(target=self._extend_loop,
                                    name='claims-%s' % self.name,
                                    daemon=True)
        extender.start()
        if CONF.compute.resize_confirm_window:
            from resize_flows import api
            self._confirmer = api.PeriodicConfirmer(
                interval=min(self._confirm_interval,
                             CONF.compute.resize_confirm_window)).start()
        LOG.info('conductor %s claims jobs on board %s (%s)', self.name,
                 CONF.jobboard.board_name, mask_url())
        try:
            self._conductor.run(max_dispatches=max_dispatches)
        finally:
            if self._confirmer is not None:
                self._confirmer.stop()
            self._done_event.set()
            extender.join()
            with contextlib.suppress(Exception):
                if self._client is not None:
                    self._client.delete(
                        _CONDUCTOR_KEY % CONF.jobboard.board_name + self.name)
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


def _iso(timestamp):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(timestamp))
