"""The jobboard client: operations posted as jobs, and who holds what.

With ``[jobboard]/enabled``, the API stores an operation's flow in the flow
log and starts it in the records as always, then posts a job naming the
flow (its logbook, and the flow id in the job's details) on TaskFlow's
Redis jobboard (:func:`post_flow`), and returns. A conductor
(:mod:`resize_flows.conductor`) claims the job and runs the flow.

This module connects to the board (:func:`connect`, :func:`board_conf`;
the back end's credentials masked in every message), posts and removes
jobs, and lists the jobs and the conductors that announce themselves on
the board (a key per conductor, :func:`conductor_key`, that lives as long
as a claim), so that ``conductor list`` tells who is alive and ``job
list`` who holds what since when.
"""
import contextlib
import json
import logging
import threading
import urllib.parse

from taskflow import exceptions as tf_exc
from taskflow.jobs import backends as job_backends
from taskflow.jobs.backends import impl_redis
from taskflow.persistence import models as tf_models

from resize_flows.conf import CONF
from resize_flows import engine
from resize_flows import exception
from resize_flows import leases
from resize_flows.persistence import attempts
from resize_flows.persistence import flowindex
from resize_flows.persistence import flowlog

LOG = logging.getLogger(__name__)

#: The state ``job list`` gives a job in the board's trash.
TRASHED = 'TRASHED'

#: Key prefix of the conductors' announcements (beside TaskFlow's keys).
_CONDUCTOR_KEY = 'resize-flows:%s:conductor:'


def conductor_key(name):
    """The board key of conductor ``name``'s announcement."""
    return _CONDUCTOR_KEY % CONF.jobboard.board_name + name


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
        flowindex.flow_posted(flow_id, job.uuid)
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

def redis_client():
    """A Redis client of the board's server, or None when the board is
    not on Redis."""
    import redis
    conf = board_conf()
    if conf['board'] != 'redis':
        return None
    kwargs = {k: conf[k] for k in ('host', 'port', 'username', 'password',
                                   'db', 'ssl') if k in conf}
    return redis.Redis(socket_timeout=5, **kwargs)


def _trashed(board):
    """The postings in the board's trash (TaskFlow's Redis trash hash:
    the jobs the conductors gave up on), as dicts; [] on another back
    end."""
    if not isinstance(board, impl_redis.RedisJobBoard):
        return []
    try:
        raw = board._client.hgetall(board.trash_key)
    except Exception as e:
        raise _unreachable(CONF.jobboard.backend_url, e)
    out = []
    for blob in raw.values():
        try:
            out.append(board._loads(blob))
        except tf_exc.JobFailure:
            LOG.warning('a posting in the trash of board %s cannot be read',
                        CONF.jobboard.board_name)
    return out


def list_jobs():
    """Every job on the board: ``job``, ``name``, ``operation``,
    ``instance_uuid``, ``flow_id``, ``state`` (UNCLAIMED, CLAIMED, or
    TRASHED: the conductors gave up on it after ``[jobboard]/
    max_attempts``, see ``reason``), ``owner`` and ``since`` (when the
    owner took the flow's lease), ``posted_at``, ``attempts`` (claims by
    conductors so far)."""
    board = get_board()
    held = flowindex.lease_list()
    out = []
    for posting in _trashed(board):
        details = posting.get('details') or {}
        flow_id = details.get('flow_uuid')
        created = posting.get('created_on')
        out.append({
            'job': posting.get('uuid'), 'name': posting.get('name'),
            'operation': details.get('operation'),
            'instance_uuid': details.get('instance_uuid'),
            'flow_id': flow_id, 'state': TRASHED, 'owner': None,
            'since': None,
            'posted_at': (created.isoformat(timespec='seconds')
                          if hasattr(created, 'isoformat') else created),
        })
    for job in board.iterjobs(ensure_fresh=True):
        details = job.details or {}
        flow_id = details.get('flow_uuid')
        try:
            state = job.state
            owner = board.find_owner(job) if state == 'CLAIMED' else None
        except (tf_exc.NotFound, tf_exc.JobFailure):
            continue
        lease = held.get(flow_id)
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
    tried = attempts.of_flows([j['flow_id'] for j in out if j['flow_id']])
    for entry in out:
        row = tried.get(entry['flow_id']) or {}
        entry['attempts'] = row.get('attempts', 0)
        entry['reason'] = row.get('reason')
    return sorted(out, key=lambda j: (j['state'] == TRASHED,
                                      j['posted_at'] or ''))


def list_conductors():
    """The conductors alive on the board: ``name``, ``host``, ``pid``,
    ``started_at``, ``seen_at`` and ``flows`` (flow ids it runs)."""
    client = redis_client()
    if client is None:
        return []
    prefix = conductor_key('')
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
    return leases.owner_name(CONF.jobboard.conductor_name)
