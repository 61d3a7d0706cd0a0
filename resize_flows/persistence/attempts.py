"""The attempts of conductors at a flow's job (``[jobboard]/max_attempts``).

Every claim of a job by a conductor is an attempt, counted here in the
database (``flow_attempts``) before the conductor runs anything, so a
conductor that dies holding the job has spent one too: its row stays
``running`` under its name, which the next attempt reads as the error
("conductor X stopped while holding the job"). An attempt that ends
without the flow having been tried (the flow busy under another's lease,
the conductor stopping) is given back (:func:`end` with ``spent=False``).
Once ``max_attempts`` were spent and the last failed, the conductors give
up: the row says when and why, and the flow is ``stuck``
(``flowstatus``) until an operator resumes or rolls it back.
"""

import sqlalchemy as sa

from resize_flows.persistence import db
from resize_flows.persistence import models

ATTEMPTS = models.FlowAttempt.__table__

#: What :func:`begin` says.
RUN = 'run'
GIVE_UP = 'give up'


def _reason(row):
    return 'gave up after %d attempts: %s' % (
        row.attempts, row.last_error or 'no error recorded')


def _died(row):
    return 'conductor %s stopped while holding the job' % row.owner


def begin(flow_id, job_uuid, owner, max_attempts):
    """Count a claim of ``flow_id``'s job by conductor ``owner``.

    Returns (RUN, attempt number) when the conductor may run the flow, or
    (GIVE_UP, reason) when ``max_attempts`` were spent already (the flow
    is then marked given up, if it was not)."""
    now = models.utcnow()
    with db.session_scope() as s:
        row = s.scalars(db.for_update(
            sa.select(models.FlowAttempt).filter_by(flow_id=flow_id),
            s)).first()
        if row is None:
            row = models.FlowAttempt(flow_id=flow_id, job_uuid=job_uuid,
                                     attempts=0, running=False)
            s.add(row)
        if row.running and row.owner != owner:
            # The conductor of the last attempt never said how it ended.
            row.last_error = _died(row)
        row.running = False
        row.updated_at = now
        if row.gave_up_at is not None:
            return GIVE_UP, row.reason
        if row.attempts >= max_attempts:
            row.gave_up_at = now
            row.reason = _reason(row)
            return GIVE_UP, row.reason
        row.attempts += 1
        row.owner = owner
        row.running = True
        row.job_uuid = job_uuid
        return RUN, row.attempts


def end(flow_id, owner, error=None, spent=True, max_attempts=None):
    """Note how ``owner``'s attempt ended: ``error`` (one line) when the
    flow failed and its job goes back to the board; ``spent=False`` when
    the flow was not tried (the attempt does not count). With
    ``max_attempts``, a failed last attempt gives up at once. Returns the
    reason when the conductors gave up, else None."""
    now = models.utcnow()
    with db.session_scope() as s:
        row = s.scalars(db.for_update(
            sa.select(models.FlowAttempt).filter_by(flow_id=flow_id),
            s)).first()
        if row is None or row.owner != owner:
            return None
        row.running = False
        row.updated_at = now
        if not spent:
            row.attempts = max(row.attempts - 1, 0)
            return None
        if error is not None:
            row.last_error = error
            if max_attempts is not None and row.attempts >= max_attempts \
                    and row.gave_up_at is None:
                row.gave_up_at = now
                row.reason = _reason(row)
                return row.reason
        return None


def get(flow_id):
    """The attempts row of a flow as a dict (see
    ``models.FlowAttempt``), or None."""
    with db.session_scope(read_only=True) as s:
        return models.as_dict(s.get(models.FlowAttempt, flow_id))


def of_flows(flow_ids):
    """{flow_id: attempts row} of those of ``flow_ids`` that conductors
    claimed."""
    if not flow_ids:
        return {}
    query = sa.select(models.FlowAttempt).where(
        models.FlowAttempt.flow_id.in_(list(flow_ids)))
    with db.session_scope(read_only=True) as s:
        return {row.flow_id: models.as_dict(row) for row in s.scalars(query)}
