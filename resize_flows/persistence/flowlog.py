"""The flow log: a TaskFlow persistence backend on the project's database.

Every state change of every flow and task is written here by TaskFlow's
engine, which is what lets another process resume or roll back a flow. It
implements TaskFlow's backend interface (``taskflow.persistence.base``:
logbooks, flow details, atom details) on the tables of ``models.py``
(``flow_logbooks``, ``flow_details``, ``flow_atoms``), created by our own
alembic chain, with the process's one SQLAlchemy engine and pool. How a
model becomes a row and back, and the statements that write one, are
:mod:`.flowrows`'.

What makes it fast, next to TaskFlow's stock SQLAlchemy backend (which
reads the row, merges, and writes it back, and rebuilds its table metadata
for each connection):

- a task transition is one ``UPDATE`` by primary key, committed by
  itself: TaskFlow's storage hands over the whole atom detail, so nothing
  is read. On PostgreSQL and MariaDB it runs in autocommit on a pool of
  its own, one round trip (the transactional engine's connections cost
  three: a ping, the statement, the commit);
- saving a flow's state is one ``UPDATE``; atoms it brings that the log
  does not hold yet (TaskFlow adds them when it first compiles the flow)
  are inserted at once, after one indexed read of the atoms' ids;
- TaskFlow marks each task's progress at 0 as it starts and at 1 as it
  ends, each a write of its own that the task's state already says: such
  a mark is not written when nothing else changed (the task's own progress
  reports are). So a task costs two writes: RUNNING, then its result;
- no schema work per call, precompiled statements, no ORM.

Fencing: a backend told who holds the flow's lease (:meth:`FlowLogBackend.
held_by`, which the engine uses for every flow it runs) makes each write of
a flow's row or of one of its atoms conditional on that lease still being
held, with the same fencing token, in the same statement (``UPDATE ...
WHERE uuid = :u AND EXISTS (SELECT 1 FROM flow_leases WHERE flow_id = ...
AND owner = :me AND token = :t)``). A process whose lease was taken over
(it stalled past the lease's expiry and another process resumed the flow)
then matches no row: :class:`~resize_flows.exception.FlowFenced` is raised,
which is not a StorageFailure, so TaskFlow does not retry it, the engine
stops at once and no undo step of the stale process runs (each needs a
write first). A backend not told a holder (TaskFlow's own persistence
tests, tools) writes unconditionally.

A call (one transaction doing the same when run twice) is run again on a
lost connection to the database server (``db.retrying``).

Durability is not traded for it: each write is committed before the call
returns (on SQLite, WAL with ``synchronous=NORMAL``, so a killed process
never loses a committed transaction), and TaskFlow reports a transition to
its listeners only after it is saved.

Stored values follow one rule on every database (``values.py``). A stored
flow detail's ``meta`` carries, besides TaskFlow's ``factory`` entry,
``operation``, ``instance_uuid`` and ``migration_uuid``, which are copied
into indexed columns for listing.
"""
import collections
import copy
import threading

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from taskflow import exceptions as tf_exc
from taskflow.persistence import base
from taskflow import states as tf_states

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import flowrows
from resize_flows.persistence import models

BOOKS = models.FlowLogBook.__table__
FLOWS = models.FlowDetail.__table__
ATOMS = models.FlowAtom.__table__

#: The atom meta key of a task's progress (TaskFlow's storage.META_PROGRESS).
PROGRESS = 'progress'

#: Flow states in which its engine has stopped running it.
_AT_REST = (tf_states.SUCCESS, tf_states.REVERTED, tf_states.FAILURE,
            tf_states.SUSPENDED)

_LOCK = threading.Lock()
_BACKENDS = {}


def get_backend(url=None):
    """The process's flow log backend for ``url`` (default: configured)."""
    url = url or db.get_url()
    with _LOCK:
        backend = _BACKENDS.get(url)
        if backend is None:
            backend = FlowLogBackend({'connection': url})
            _BACKENDS[url] = backend
        return backend


def reset():
    with _LOCK:
        _BACKENDS.clear()


class FlowLogBackend(base.Backend):
    """TaskFlow's persistence backend on the project's database.

    ``conf`` is TaskFlow's usual dict; ``connection`` is a database URL
    (default: the configured one), ``synchronous_commit`` overrides
    ``[flows]/log_synchronous_commit``. Cheap to share: connections are
    stateless views of the process's engine.
    """

    #: Atoms whose last write this backend remembers (see _unchanged).
    REMEMBERED = 4096

    #: (owner, token) of the lease every write must still be held under;
    #: None: writes are not fenced (see :meth:`held_by`).
    fence = None

    def __init__(self, conf=None):
        super().__init__(conf or {})
        self.url = self._conf.get('connection') or db.get_url()
        self._last = collections.OrderedDict()
        self._held = collections.OrderedDict()
        self._last_lock = threading.Lock()

    def _remember(self, row, meta):
        """Note ``row`` (and its ``meta``, as a dict) as its atom's last
        write."""
        meta = dict(meta or {})
        rest = {k: v for k, v in row.items() if k not in (
            'meta', 'updated_at')}
        with self._last_lock:
            self._last.pop(row['uuid'], None)
            self._last[row['uuid']] = (rest, meta)
            if len(self._last) > self.REMEMBERED:
                self._last.popitem(last=False)

    def _unchanged(self, row, meta):
        """True when ``row`` (whose meta is the dict ``meta``) differs from
        the last write of its atom by this backend only by a progress mark
        the state says already (0 with nothing reported yet, 1 once
        finished)."""
        with self._last_lock:
            last = self._last.get(row['uuid'])
        if last is None:
            return False
        meta = meta or {}
        rest = {k: v for k, v in row.items() if k not in (
            'meta', 'updated_at')}
        if last[0] != rest:
            return False
        last_meta = dict(last[1])
        new_meta = dict(meta)
        before = last_meta.pop(PROGRESS, None)
        after = new_meta.pop(PROGRESS, None)
        if last_meta != new_meta:
            return False
        if before == after:
            return True
        return (after == 0.0 and before is None) or (
            after == 1.0 and row['state'] == tf_states.SUCCESS)

    def forget(self, atom_uuids, flow_uuid=None):
        """Forget the last writes of these atoms (their flow was read from
        the log again, maybe written by another process since, or it has
        stopped) and which atoms the flow ``flow_uuid`` holds."""
        with self._last_lock:
            for uuid in atom_uuids:
                self._last.pop(uuid, None)
            if flow_uuid is not None:
                self._held.pop(flow_uuid, None)

    def held_atoms(self, flow_uuid):
        """The atoms this backend knows the log holds for a flow, or None
        when it knows nothing of the flow."""
        with self._last_lock:
            return self._held.get(flow_uuid)

    def hold_atoms(self, flow_uuid, atom_uuids):
        with self._last_lock:
            self._held.pop(flow_uuid, None)
            self._held[flow_uuid] = frozenset(atom_uuids)
            if len(self._held) > self.REMEMBERED:
                self._held.popitem(last=False)

    @property
    def engine(self):
        return db.get_engine(self.url)

    @property
    def writer(self):
        """The engine of one-statement writes: on a database server, in
        autocommit (one round trip each); on SQLite, :attr:`engine`."""
        return db.get_engine(
            self.url, autocommit=True,
            synchronous=self._conf.get('synchronous_commit',
                                       CONF.flows.log_synchronous_commit))

    def held_by(self, owner, token):
        """A view of this backend whose writes of a flow are refused
        (:class:`~resize_flows.exception.FlowFenced`) unless the flow's
        lease is still held by ``owner`` with fencing token ``token``. It
        shares this backend's engine and its cache of last writes."""
        view = copy.copy(self)
        view.fence = (owner, token)
        return view

    def get_connection(self):
        return Connection(self)

    def close(self):
        pass


def _storage_failure(message):
    tf_exc.raise_with_cause(tf_exc.StorageFailure, message)


class Connection(base.Connection):
    """A view of the flow log; every call is its own transaction."""

    def __init__(self, backend):
        self._backend = backend
        self._fence = backend.fence

    @property
    def backend(self):
        return self._backend

    @property
    def _engine(self):
        return self._backend.engine

    @property
    def _reader(self):
        """Reads only: on SQLite, transactions that take no lock."""
        return db.get_reader(self._backend.url)

    def close(self):
        pass

    @db.retrying
    def validate(self):
        """Check that the database answers and holds the flow log."""
        try:
            with self._reader.connect() as conn:
                conn.execute(sa.select(FLOWS.c.uuid).limit(1)).all()
        except sa_exc.SQLAlchemyError:
            _storage_failure('the flow log is not reachable or not set up '
                             '(run resize-flows db sync)')

    def upgrade(self):
        """Create or upgrade the flow log: it is part of our schema."""
        from resize_flows.persistence import migration
        migration.db_sync(self._backend.url)

    def clear_all(self):
        try:
            with self._engine.begin() as conn:
                conn.execute(BOOKS.delete())
                conn.execute(FLOWS.delete())
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed clearing the flow log')

    # -- writes --------------------------------------------------------------

    @db.retrying
    def update_atom_details(self, atom_detail):
        """Save an atom detail that the log holds: one UPDATE."""
        row = flowrows.atom_row(atom_detail)
        if self._backend._unchanged(row, atom_detail.meta):
            self._backend._remember(row, atom_detail.meta)
            return atom_detail
        statement, params = self._update(row, flowrows.UPDATE_ATOM,
                                         flowrows.UPDATE_ATOM_FENCED)
        try:
            with self._backend.writer.begin() as conn:
                if conn.execute(statement, params).rowcount != 1:
                    flow_uuid = conn.execute(
                        sa.select(ATOMS.c.flow_uuid).where(
                            ATOMS.c.uuid == atom_detail.uuid)).scalar()
                    if flow_uuid is None or self._fence is None:
                        raise tf_exc.NotFound(
                            "No atom details found with uuid '%s'"
                            % atom_detail.uuid)
                    self._fenced(flow_uuid, 'task %s (%s)' % (
                        atom_detail.name, atom_detail.state))
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed saving atom %s (%s)' % (
                atom_detail.name, atom_detail.uuid))
        self._backend._remember(row, atom_detail.meta)
        return atom_detail

    def _update(self, row, plain, fenced):
        """(statement, parameters) of the UPDATE of ``row`` by its uuid:
        ``fenced`` when this connection writes for a lease holder."""
        params = dict(row, b_uuid=row['uuid'])
        del params['uuid']
        if self._fence is None:
            return plain, params
        params['f_owner'], params['f_token'] = self._fence
        return fenced, params

    def _fenced(self, flow_uuid, what):
        owner, token = self._fence
        raise exception.FlowFenced(flow_id=flow_uuid, owner=owner,
                                   token=token, what=what)

    def _insert_atoms(self, conn, flow_uuid, atoms):
        if not atoms:
            return
        now = models.utcnow()
        conn.execute(ATOMS.insert(), [
            dict(flowrows.atom_row(ad), flow_uuid=flow_uuid, created_at=now)
            for ad in atoms])

    def _save_flow(self, conn, fd, book_uuid=None, ignore_missing=False):
        """Update or insert a flow detail; insert the atoms it brings that
        the log does not hold. Returns True when the flow was new."""
        row = flowrows.flow_row(fd)
        statement, params = self._update(row, flowrows.UPDATE_FLOW,
                                         flowrows.UPDATE_FLOW_FENCED)
        if conn.execute(statement, params).rowcount == 1:
            ids = {ad.uuid for ad in fd}
            if ids:
                held = set(conn.execute(
                    sa.select(ATOMS.c.uuid)
                    .where(ATOMS.c.flow_uuid == fd.uuid)).scalars())
                self._insert_atoms(conn, fd.uuid,
                                   [ad for ad in fd if ad.uuid not in held])
            return False
        if self._fence is not None and conn.execute(
                sa.select(FLOWS.c.uuid).where(
                    FLOWS.c.uuid == fd.uuid)).first() is not None:
            self._fenced(fd.uuid, 'the flow (%s)' % fd.state)
        if book_uuid is None and not ignore_missing:
            raise tf_exc.NotFound(
                "No flow details found with uuid '%s'" % fd.uuid)
        conn.execute(FLOWS.insert().values(
            dict(row, logbook_uuid=book_uuid, created_at=row['updated_at'])))
        self._insert_atoms(conn, fd.uuid, list(fd))
        return True

    @db.retrying
    def update_flow_details(self, flow_detail, ignore_missing=False):
        """Save a flow detail that the log holds, and the atoms it brings
        that the log does not hold yet.

        An atom the log holds already is saved by
        :meth:`update_atom_details`, as TaskFlow's storage always does:
        rewriting every atom here would multiply the writes of each flow
        state change by the number of tasks.
        """
        atoms = {ad.uuid for ad in flow_detail}
        try:
            held = self._backend.held_atoms(flow_detail.uuid)
            if held is not None and atoms <= held:
                # Its atoms are all in the log: a state change, one UPDATE.
                # (Fenced like every write; refused, the full path below
                # finds out why.)
                statement, params = self._update(
                    flowrows.flow_row(flow_detail), flowrows.UPDATE_FLOW,
                    flowrows.UPDATE_FLOW_FENCED)
                with self._backend.writer.begin() as conn:
                    saved = conn.execute(statement, params).rowcount == 1
            else:
                saved = False
            if not saved:
                with self._engine.begin() as conn:
                    self._save_flow(conn, flow_detail,
                                    ignore_missing=ignore_missing)
                self._backend.hold_atoms(flow_detail.uuid, atoms)
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed saving flow %s' % flow_detail.uuid)
        if flow_detail.state in _AT_REST:
            # Its engine has stopped: nothing left to compare writes with.
            self._backend.forget(atoms, flow_detail.uuid)
        return flow_detail

    @db.retrying
    def save_logbook(self, book):
        """Save a logbook, its flow details and their atoms (new or not)."""
        try:
            with self._engine.begin() as conn:
                row = flowrows.book_row(book)
                params = {'b_uuid': book.uuid, 'name': row['name'],
                          'meta': row['meta'], 'updated_at': models.utcnow()}
                if conn.execute(flowrows.UPDATE_BOOK, params).rowcount != 1:
                    conn.execute(BOOKS.insert().values(row))
                for fd in book:
                    if not self._save_flow(conn, fd, book_uuid=book.uuid):
                        # A flow saved before: its atoms may have changed.
                        for ad in fd:
                            params = dict(flowrows.atom_row(ad),
                                          b_uuid=ad.uuid)
                            del params['uuid']
                            conn.execute(flowrows.UPDATE_ATOM, params)
            for fd in book:
                self._backend.hold_atoms(fd.uuid, [ad.uuid for ad in fd])
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed saving logbook %s' % book.uuid)
        return book

    def destroy_logbook(self, book_uuid):
        try:
            with self._engine.begin() as conn:
                # Cascades on every database (SQLite: foreign_keys=ON).
                deleted = conn.execute(
                    BOOKS.delete().where(BOOKS.c.uuid == book_uuid)).rowcount
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed destroying logbook %s' % book_uuid)
        if deleted == 0:
            raise tf_exc.NotFound("No logbook found with uuid '%s'"
                                  % book_uuid)

    # -- reads ---------------------------------------------------------------

    def _populate(self, conn, flows):
        """Fill flow details with their atoms: one query for all."""
        if not flows:
            return
        by_uuid = {fd.uuid: fd for fd in flows}
        rows = conn.execute(sa.select(ATOMS).where(
            ATOMS.c.flow_uuid.in_(list(by_uuid)))
            .order_by(ATOMS.c.created_at, ATOMS.c.uuid)).all()
        self._backend.forget(row.uuid for row in rows)
        for row in rows:
            by_uuid[row.flow_uuid].add(flowrows.to_atom(row))
        for fd in flows:
            self._backend.hold_atoms(fd.uuid, [ad.uuid for ad in fd])

    @db.retrying
    def _books(self, where, lazy):
        try:
            with self._reader.connect() as conn:
                books = [flowrows.to_book(r) for r in conn.execute(
                    sa.select(BOOKS).where(*where))]
                if not lazy and books:
                    by_uuid = {b.uuid: b for b in books}
                    flows = []
                    for row in conn.execute(sa.select(FLOWS).where(
                            FLOWS.c.logbook_uuid.in_(list(by_uuid)))):
                        fd = flowrows.to_flow(row)
                        by_uuid[row.logbook_uuid].add(fd)
                        flows.append(fd)
                    self._populate(conn, flows)
                return books
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed reading logbooks')

    def get_logbook(self, book_uuid, lazy=False):
        books = self._books([BOOKS.c.uuid == book_uuid], lazy)
        if not books:
            raise tf_exc.NotFound("No logbook found with uuid '%s'"
                                  % book_uuid)
        return books[0]

    def get_logbooks(self, lazy=False):
        yield from self._books([], lazy)

    @db.retrying
    def _flows(self, where, lazy):
        try:
            with self._reader.connect() as conn:
                flows = [flowrows.to_flow(r) for r in conn.execute(
                    sa.select(FLOWS).where(*where))]
                if not lazy:
                    self._populate(conn, flows)
                return flows
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed reading flow details')

    def get_flows_for_book(self, book_uuid, lazy=False):
        yield from self._flows([FLOWS.c.logbook_uuid == book_uuid], lazy)

    def get_flow_details(self, fd_uuid, lazy=False):
        flows = self._flows([FLOWS.c.uuid == fd_uuid], lazy)
        if not flows:
            raise tf_exc.NotFound("No flow details found with uuid '%s'"
                                  % fd_uuid)
        return flows[0]

    @db.retrying
    def _atoms(self, where):
        try:
            with self._reader.connect() as conn:
                return [flowrows.to_atom(r) for r in conn.execute(
                    sa.select(ATOMS).where(*where)
                    .order_by(ATOMS.c.created_at, ATOMS.c.uuid))]
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed reading atom details')

    def get_atom_details(self, ad_uuid):
        atoms = self._atoms([ATOMS.c.uuid == ad_uuid])
        if not atoms:
            raise tf_exc.NotFound("No atom details found with uuid '%s'"
                                  % ad_uuid)
        return atoms[0]

    def get_atoms_for_flow(self, fd_uuid):
        yield from self._atoms([ATOMS.c.flow_uuid == fd_uuid])

    # -- resize-flows' own reads ---------------------------------------------

    @db.retrying
    def find_flow(self, flow_uuid):
        """(logbook uuid, flow detail with its atoms) or NotFound: the
        flow's row by primary key and its atoms by index, nothing else."""
        try:
            with self._reader.connect() as conn:
                row = conn.execute(sa.select(FLOWS).where(
                    FLOWS.c.uuid == flow_uuid)).first()
                if row is None:
                    raise tf_exc.NotFound(
                        "No flow details found with uuid '%s'" % flow_uuid)
                fd = flowrows.to_flow(row)
                self._populate(conn, [fd])
                return row.logbook_uuid, fd
        except sa_exc.SQLAlchemyError:
            _storage_failure('failed reading flow %s' % flow_uuid)
