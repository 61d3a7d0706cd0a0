"""Abort requests of flows: recorded by the API, read at safe points."""
import sqlalchemy as sa

from resize_flows.persistence import db
from resize_flows.persistence import models


def abort_request(flow_id, requested_by=None, request_id=None):
    """Record that ``flow_id`` is to be aborted (once: a second request
    keeps the first). Returns the request as a dict."""
    with db.session_scope() as s:
        row = s.get(models.FlowAbort, flow_id)
        if row is None:
            row = models.FlowAbort(flow_id=flow_id,
                                   requested_by=requested_by,
                                   request_id=request_id)
            s.add(row)
            s.flush()
        return models.as_dict(row)


def abort_get(flow_id):
    """The abort request of ``flow_id``, or None."""
    with db.session_scope(read_only=True) as s:
        row = s.get(models.FlowAbort, flow_id)
        return None if row is None else models.as_dict(row)


def abort_delete(flow_id):
    """Forget the abort request of ``flow_id`` (a refused abort)."""
    with db.session_scope() as s:
        s.execute(sa.delete(models.FlowAbort)
                  .where(models.FlowAbort.flow_id == flow_id))
