"""Every SQL statement on the flow log's tables outside TaskFlow's backend.

TaskFlow reads and writes flows through its backend (``flowlog.py``).
Around it resize-flows keeps, in the same database: the lease rows (who
holds a flow, until when, under which fencing token), the job a flow was
posted as, and the indexed columns that list, page, filter and purge flows
without loading them. This module is the one place that queries those.
Each function is one transaction, run again as a whole on a lost
database connection (``db.retrying``): each is a read, or a write whose
second run does what the first did (a lease taken again by its owner
keeps its token).
What the rows mean (a flow's status) is ``flowstatus.py``'s; who may take
a lease is ``leases.py``'s.
"""
import datetime

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from taskflow import states as tf_states

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import models
from resize_flows import states
from resize_flows import timeutils

FLOWS = flowlog.FLOWS
BOOKS = flowlog.BOOKS
LEASES = models.FlowLease.__table__
ABANDONS = models.FlowAbandon.__table__
ATTEMPTS = models.FlowAttempt.__table__


# -- lease rows --------------------------------------------------------------

def _lease_dict(lease):
    out = {}
    for column in lease.__table__.columns:
        value = getattr(lease, column.key)
        if isinstance(value, datetime.datetime):
            value = timeutils.iso(value)
        out[column.key] = value
    out['live'] = lease.expires_at > models.utcnow()
    return out


def _next_token(previous=0):
    """A fencing token greater than ``previous`` and than any token handed
    out before on this database: the time in microseconds, or one more
    than the last when the clock has not moved on. (A released lease's row
    is deleted, so the token of its next holder cannot count on the row.)
    """
    now = int(models.utcnow().replace(
        tzinfo=datetime.timezone.utc).timestamp() * 1_000_000)
    return max(now, (previous or 0) + 1)


@db.retrying
def lease_acquire(flow_id, owner, seconds):
    """Take the lease of a flow for ``seconds``: free, expired or ours
    already. Raises ``FlowBusy`` while another owner's lease is live.

    Returns the lease's fencing token: a new, greater one when the lease
    changes hands, the same one when it was ours already.
    """
    now = models.utcnow()
    expires = now + datetime.timedelta(seconds=seconds)
    try:
        with db.session_scope() as s:
            lease = s.scalars(db.for_update(
                sa.select(models.FlowLease).filter_by(flow_id=flow_id),
                s)).first()
            if lease is None:
                token = _next_token()
                s.add(models.FlowLease(flow_id=flow_id, owner=owner,
                                       acquired_at=now, expires_at=expires,
                                       token=token))
                return token
            if lease.owner != owner and lease.expires_at > now:
                raise exception.FlowBusy(
                    flow_id=flow_id, owner=lease.owner,
                    expires_at=timeutils.iso(lease.expires_at))
            if lease.owner != owner:
                lease.acquired_at = now
                lease.token = _next_token(lease.token)
            lease.owner = owner
            lease.expires_at = expires
            return lease.token
    except sa_exc.IntegrityError:
        # Another process inserted it between our read and our insert.
        raise exception.FlowBusy(flow_id=flow_id, owner='another process',
                                 expires_at='?')


@db.retrying
def lease_renew(flow_id, owner, seconds, token=None):
    """Extend our lease (the one of ``token``, when given); False if it is
    no longer ours."""
    with db.session_scope() as s:
        where = [LEASES.c.flow_id == flow_id, LEASES.c.owner == owner]
        if token is not None:
            where.append(LEASES.c.token == token)
        result = s.execute(
            LEASES.update().where(*where)
            .values(expires_at=models.utcnow() +
                    datetime.timedelta(seconds=seconds)))
        return result.rowcount == 1


@db.retrying
def lease_release(flow_id, owner, token=None):
    """Give up our lease (the one of ``token``, when given): a lease taken
    over by another holder since is left alone."""
    with db.session_scope() as s:
        where = [models.FlowLease.flow_id == flow_id,
                 models.FlowLease.owner == owner]
        if token is not None:
            where.append(models.FlowLease.token == token)
        s.execute(sa.delete(models.FlowLease).where(*where))


@db.retrying
def lease_get(flow_id):
    with db.session_scope(read_only=True) as s:
        lease = s.get(models.FlowLease, flow_id)
        return None if lease is None else _lease_dict(lease)


@db.retrying
def lease_list():
    """{flow_id: lease} of every lease, live or expired."""
    with db.session_scope(read_only=True) as s:
        return {lease.flow_id: _lease_dict(lease)
                for lease in s.scalars(sa.select(models.FlowLease))}


# -- jobs --------------------------------------------------------------------

@db.retrying
def flow_posted(flow_id, job_uuid):
    """Note that a stored flow was posted as job ``job_uuid`` on the
    jobboard: until a conductor starts it, the flow is ``queued``."""
    with db.session_scope() as s:
        s.execute(sa.update(models.FlowDetail)
                  .where(models.FlowDetail.uuid == flow_id)
                  .values(job_uuid=job_uuid))


@db.retrying
def job_uuid(flow_id):
    """The job a stored flow was posted as, or None."""
    with db.get_reader().connect() as conn:
        return conn.execute(sa.select(FLOWS.c.job_uuid).where(
            FLOWS.c.uuid == flow_id)).scalar()


# -- filters: one per status of flowstatus.flow_status -----------------------
# Each is SQL for one status (the state column is indexed, so each is an
# index range, not a scan of every flow; a flow never run has the state
# NULL until its engine first saves it), given the time ``now`` that says
# which leases are live.

def _live(now):
    return LEASES.c.expires_at > now


def _not_live(now):
    return sa.or_(LEASES.c.flow_id.is_(None), LEASES.c.expires_at <= now)


def _never_run():
    state = FLOWS.c.state
    return sa.or_(state.is_(None), state == tf_states.PENDING)


def _under_way():
    state = FLOWS.c.state
    return sa.or_(state.is_(None), state.in_(states.FLOW_UNDER_WAY))


def finished(now):
    return FLOWS.c.state == tf_states.SUCCESS


def rolled_back(now):
    return FLOWS.c.state == tf_states.REVERTED


def _not_abandoned():
    return ABANDONS.c.flow_id.is_(None)


def running(now):
    return sa.and_(sa.or_(_under_way(), FLOWS.c.state == tf_states.FAILURE),
                   _live(now))


def _given_up():
    """The conductors gave up on its job ([jobboard]/max_attempts)."""
    return ATTEMPTS.c.gave_up_at.is_not(None)


def stuck(now):
    return sa.and_(sa.or_(FLOWS.c.state == tf_states.FAILURE,
                          sa.and_(_under_way(), _given_up())),
                   _not_live(now), _not_abandoned())


def queued(now):
    return sa.and_(_never_run(), FLOWS.c.job_uuid.is_not(None),
                   _not_live(now), _not_abandoned(),
                   sa.not_(_given_up()))


def interrupted(now):
    return sa.and_(_under_way(), _not_live(now), _not_abandoned(),
                   sa.not_(_given_up()),
                   sa.not_(sa.and_(_never_run(),
                                   FLOWS.c.job_uuid.is_not(None))))


def abandoned(now):
    """Given up on by an operator (``flow abandon``), whatever its
    state; never leased again."""
    return sa.and_(ABANDONS.c.flow_id.is_not(None), _not_live(now))


def in_state(state):
    """A filter: the flow log's state is ``state``."""
    return lambda now: FLOWS.c.state == state


# -- listing -----------------------------------------------------------------

def _listing():
    return (sa.select(FLOWS.c.uuid, FLOWS.c.state, FLOWS.c.operation,
                      FLOWS.c.instance_uuid, FLOWS.c.migration_uuid,
                      FLOWS.c.project_id, FLOWS.c.job_uuid,
                      FLOWS.c.created_at, FLOWS.c.updated_at,
                      LEASES.c.owner, LEASES.c.expires_at,
                      ABANDONS.c.flow_id.label('abandoned'),
                      ATTEMPTS.c.attempts, ATTEMPTS.c.reason)
            .select_from(FLOWS.outerjoin(
                LEASES, LEASES.c.flow_id == FLOWS.c.uuid).outerjoin(
                    ABANDONS, ABANDONS.c.flow_id == FLOWS.c.uuid).outerjoin(
                    ATTEMPTS, ATTEMPTS.c.flow_id == FLOWS.c.uuid)))


def _row(row, now):
    """A listed flow as a dict: its columns, its lease's ``owner`` and
    whether that lease is ``live`` (None without a lease), the
    conductors' ``attempts`` at its job and, if they gave up, why
    (``gave_up``)."""
    return {
        'flow_id': row.uuid,
        'operation': row.operation,
        'instance_uuid': row.instance_uuid,
        'migration_uuid': row.migration_uuid,
        'project_id': row.project_id,
        'state': row.state,
        'job_uuid': row.job_uuid,
        'created_at': timeutils.iso(row.created_at),
        'updated_at': timeutils.iso(row.updated_at),
        'owner': row.owner,
        'live': None if row.owner is None else row.expires_at > now,
        'abandoned': row.abandoned is not None,
        'attempts': row.attempts or 0,
        'gave_up': row.reason,
    }


@db.retrying
def list_rows(where=None, server=None, operation=None, limit=None,
              marker=None, project=None):
    """Stored flows, newest first (see :func:`_row`): those ``where``
    keeps (one of the filters above), of server ``server``, operation
    ``operation``, project ``project``; ``limit`` flows at most, those
    after the flow ``marker`` (the last flow of the previous page): one
    indexed query whatever the number of stored flows."""
    now = models.utcnow()
    query = _listing()
    if where is not None:
        query = query.where(where(now))
    if server is not None:
        query = query.where(FLOWS.c.instance_uuid == server)
    if operation is not None:
        query = query.where(FLOWS.c.operation == operation)
    if project is not None:
        query = query.where(FLOWS.c.project_id == project)
    with db.get_reader().connect() as conn:
        if marker is not None:
            created = conn.execute(sa.select(FLOWS.c.created_at).where(
                FLOWS.c.uuid == marker)).scalar()
            if created is None:
                raise exception.MarkerNotFound(marker=marker)
            # The first condition is an index range where the page starts;
            # the second drops the marker and those before it in a tie.
            query = query.where(
                FLOWS.c.created_at <= created,
                sa.or_(FLOWS.c.created_at < created,
                       FLOWS.c.uuid < marker))
        query = query.order_by(FLOWS.c.created_at.desc(),
                               FLOWS.c.uuid.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = conn.execute(query).all()
    return [_row(row, now) for row in rows]


@db.retrying
def get_row(flow_id):
    """One stored flow as :func:`list_rows` gives it, or None: one row
    read."""
    now = models.utcnow()
    with db.get_reader().connect() as conn:
        row = conn.execute(_listing().where(FLOWS.c.uuid == flow_id)).first()
    return None if row is None else _row(row, now)


@db.retrying
def owner_of(flow_id):
    """{'instance_uuid', 'project_id'} of a stored flow, or None."""
    with db.get_reader().connect() as conn:
        row = conn.execute(sa.select(
            FLOWS.c.instance_uuid, FLOWS.c.project_id).where(
                FLOWS.c.uuid == flow_id)).first()
    if row is None:
        return None
    return {'instance_uuid': row.instance_uuid, 'project_id': row.project_id}


# -- purge -------------------------------------------------------------------

def purge(before, dry_run=False, batch=500):
    """Delete the flows that ended before ``before`` (a naive UTC
    datetime), with their lease rows and the logbooks left empty, in
    batches of ``batch`` flows, one transaction each; a finished move
    whose migration still waits for confirm or revert is kept. Returns
    the number of flows deleted (or that would be, with ``dry_run``)."""
    migrations = models.Migration.__table__
    waiting = sa.exists().where(
        migrations.c.uuid == FLOWS.c.migration_uuid,
        migrations.c.status == states.MIGRATION_FINISHED)
    chosen = (sa.select(FLOWS.c.uuid, FLOWS.c.logbook_uuid)
              .where(FLOWS.c.state.in_(states.FLOW_ENDED),
                     FLOWS.c.updated_at < before,
                     ~(FLOWS.c.state == tf_states.SUCCESS) | ~waiting))
    engine = db.get_engine()
    if dry_run:
        with db.get_reader().connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(
                chosen.subquery())).scalar()
    purged = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(chosen.limit(batch)).all()
            if not rows:
                return purged
            flow_ids = [r.uuid for r in rows]
            conn.execute(FLOWS.delete().where(FLOWS.c.uuid.in_(flow_ids)))
            conn.execute(LEASES.delete().where(
                LEASES.c.flow_id.in_(flow_ids)))
            conn.execute(ATTEMPTS.delete().where(
                ATTEMPTS.c.flow_id.in_(flow_ids)))
            book_ids = {r.logbook_uuid for r in rows} - {None}
            if book_ids:
                # Logbooks left empty (resize-flows keeps one per flow).
                conn.execute(BOOKS.delete().where(
                    BOOKS.c.uuid.in_(book_ids),
                    ~sa.exists().where(FLOWS.c.logbook_uuid == BOOKS.c.uuid)))
            purged += len(flow_ids)
