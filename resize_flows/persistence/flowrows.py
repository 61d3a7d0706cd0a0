"""The flow log's rows: TaskFlow's models stored as rows, and back.

A logbook, a flow detail and an atom detail of TaskFlow
(``taskflow.persistence.models``) become one row each of ``flow_logbooks``,
``flow_details`` and ``flow_atoms`` (``models.py``), their values in the
one stored form of ``values.py``, and are read back from them. A flow's
``meta`` keys of :data:`INDEXED_META` are copied into columns for listing.
The precompiled statements here write such a row by its uuid, in one
``UPDATE``; the fenced ones only while the writer still holds the flow's
lease. The backend that runs them is :mod:`.flowlog`.
"""
import sqlalchemy as sa
from taskflow.persistence import models as tf_models
from taskflow.types import failure as tf_failure

from resize_flows.persistence import models
from resize_flows.persistence import values

_BOOKS = models.FlowLogBook.__table__
_FLOWS = models.FlowDetail.__table__
_ATOMS = models.FlowAtom.__table__
_LEASES = models.FlowLease.__table__

#: meta keys copied into columns of ``flow_details``.
INDEXED_META = ('operation', 'instance_uuid', 'migration_uuid',
                'project_id')


def _now():
    return models.utcnow()


def book_row(book):
    return {
        'uuid': book.uuid,
        'name': book.name,
        'meta': values.dumps(book.meta, 'logbook meta'),
        'created_at': book.created_at or _now(),
        'updated_at': book.updated_at,
    }


def flow_row(fd):
    meta = fd.meta or {}
    row = {
        'uuid': fd.uuid,
        'name': fd.name,
        'state': fd.state,
        'meta': values.dumps(fd.meta, 'meta of flow %s' % fd.uuid),
        'updated_at': _now(),
    }
    for key in INDEXED_META:
        value = meta.get(key)
        row[key] = value if isinstance(value, str) else None
    return row


def atom_row(ad):
    where = 'atom %s' % ad.name
    atom_type = tf_models.atom_detail_type(ad)
    data = ad.to_dict()
    results = data['results']
    if isinstance(ad, tf_models.RetryDetail):
        results = values.retry_results(results)
    return {
        'uuid': ad.uuid,
        'name': ad.name,
        'atom_type': atom_type,
        'version': (None if data['version'] is None
                    else str(data['version'])),
        'state': data['state'],
        'intention': data['intention'],
        'results': values.dumps(results, 'result of %s' % where),
        'failure': values.dumps(values.failure_dict(data['failure']),
                                'failure of %s' % where),
        'revert_results': values.dumps(data['revert_results'],
                                       'revert result of %s' % where),
        'revert_failure': values.dumps(
            values.failure_dict(data['revert_failure']),
            'revert failure of %s' % where),
        'meta': values.dumps(data['meta'], 'meta of %s' % where),
        'updated_at': _now(),
    }


def to_book(row):
    book = tf_models.LogBook(row.name, uuid=row.uuid)
    book.meta = values.loads(row.meta) or {}
    book.created_at = row.created_at
    book.updated_at = row.updated_at
    return book


def to_flow(row):
    fd = tf_models.FlowDetail(row.name, row.uuid)
    fd.state = row.state
    fd.meta = values.loads(row.meta) or {}
    return fd


def _retry_history(results):
    """A retry's history, ``[(provided, {atom: Failure})]``, from its
    stored form. (TaskFlow 6.5's ``RetryDetail.from_dict`` reuses its loop
    variable and puts each failure's dict in place of what the retry had
    provided: a resumed reschedule would think it had tried a dict.)"""
    return [(provided, {name: tf_failure.Failure.from_dict(fail)
                        for name, fail in (failures or {}).items()})
            for provided, failures in results or []]


def to_atom(row):
    cls = tf_models.atom_detail_class(row.atom_type)
    if cls is tf_models.RetryDetail:
        # Decoded here, not by RetryDetail.from_dict (see _retry_history).
        atom = tf_models.AtomDetail.from_dict.__func__(cls, _atom_dict(row))
        atom.results = _retry_history(atom.results)
        return atom
    return cls.from_dict(_atom_dict(row))


def _atom_dict(row):
    return {
        'uuid': row.uuid,
        'name': row.name,
        'version': row.version,
        'state': row.state,
        'intention': row.intention,
        'results': values.loads(row.results),
        'failure': values.loads(row.failure),
        'revert_results': values.loads(row.revert_results),
        'revert_failure': values.loads(row.revert_failure),
        'meta': values.loads(row.meta),
    }


# Precompiled statements (bind parameters named after the columns, with a
# ``b_`` prefix where a column is also a SET target).
UPDATE_ATOM = (_ATOMS.update().where(_ATOMS.c.uuid == sa.bindparam('b_uuid'))
               .values({c: sa.bindparam(c) for c in (
                    'name', 'atom_type', 'version', 'state', 'intention',
                    'results', 'failure', 'revert_results',
                    'revert_failure', 'meta', 'updated_at')}))
# A flow stored before revision 0007 has no project in its meta, only in
# its column (given by the revision): the UPDATE keeps the column then.
UPDATE_FLOW = (_FLOWS.update().where(_FLOWS.c.uuid == sa.bindparam('b_uuid'))
               .values(dict(
                    {c: sa.bindparam(c) for c in (
                        'name', 'state', 'meta', 'updated_at')
                     + INDEXED_META},
                    project_id=sa.func.coalesce(
                        sa.bindparam('project_id', type_=sa.String(255)),
                        _FLOWS.c.project_id))))


def _held(flow_uuid_column):
    """The lease of the flow in ``flow_uuid_column`` is still held by the
    writer (bind parameters ``f_owner`` and ``f_token``)."""
    return sa.exists().where(_LEASES.c.flow_id == flow_uuid_column,
                             _LEASES.c.owner == sa.bindparam('f_owner'),
                             _LEASES.c.token == sa.bindparam('f_token'))


# The same, for a writer that holds the flow's lease: one statement still.
UPDATE_ATOM_FENCED = UPDATE_ATOM.where(_held(_ATOMS.c.flow_uuid))
UPDATE_FLOW_FENCED = UPDATE_FLOW.where(_held(_FLOWS.c.uuid))
UPDATE_BOOK = (_BOOKS.update().where(_BOOKS.c.uuid == sa.bindparam('b_uuid'))
               .values({c: sa.bindparam(c) for c in (
                    'name', 'meta', 'updated_at')}))
