"""One SQLAlchemy engine per database URL per process, and transactions.

SQLite gets WAL mode, foreign keys and ``BEGIN IMMEDIATE`` transactions: a
writer takes the database lock when its transaction starts, so two
compare-and-swap updates or two capacity claims never interleave. PostgreSQL
and MariaDB lock the rows they check (``SELECT ... FOR UPDATE``) instead.
"""
import contextlib
import os
import stat
import threading

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import orm

from resize_flows.conf import CONF

_LOCK = threading.Lock()
_ENGINES = {}


def sqlite_path(conf=CONF):
    return os.path.join(conf.state_dir, 'resize-flows.sqlite')


def get_url(conf=CONF):
    """The configured database URL, or the embedded SQLite file."""
    if conf.database.connection:
        return conf.database.connection
    return 'sqlite:///' + sqlite_path(conf)


def _private_sqlite_file(database):
    """Create the SQLite file (and its directory) private to this user
    before SQLite does: SQLite creates it, and its -wal and -shm files
    with the same mode, as the umask allows (0644 under 022). A file
    others may read or write is made private. A directory made here may
    be entered, not listed, by others (0711): it is the state_dir, where
    the session user reaches its local hosts."""
    folder = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(folder):
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        try:
            os.mkdir(folder, 0o711)
        except FileExistsError:
            pass
    fd = os.open(database, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
    finally:
        os.close(fd)
    for suffix in ('-wal', '-shm'):
        try:
            st = os.lstat(database + suffix)
        except FileNotFoundError:
            continue
        if (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
                and stat.S_IMODE(st.st_mode) & 0o077):
            os.chmod(database + suffix, stat.S_IMODE(st.st_mode) & 0o700)


def _setup_sqlite(engine):
    @event.listens_for(engine, 'connect')
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute('PRAGMA foreign_keys=ON')
        cur.execute('PRAGMA busy_timeout=30000')
        cur.execute('PRAGMA journal_mode=WAL')
        cur.execute('PRAGMA synchronous=NORMAL')
        cur.close()

    @event.listens_for(engine, 'begin')
    def _on_begin(conn):
        conn.exec_driver_sql('BEGIN IMMEDIATE')


def create_engine(url, echo=False, autocommit=False, synchronous=True):
    """A new engine for ``url``, set up for resize-flows' use.

    ``autocommit`` (PostgreSQL and MySQL only): each statement commits by
    itself, in one round trip; connections are not pinged when taken from
    the pool (a dropped one fails its statement, which is retried).
    ``synchronous=False`` (PostgreSQL only): commits do not wait for the
    disk (``synchronous_commit=off``).
    """
    url_obj = sa.engine.make_url(url)
    kwargs = {'echo': echo, 'future': True}
    if url_obj.get_backend_name() == 'sqlite':
        database = url_obj.database
        if database and database != ':memory:':
            _private_sqlite_file(database)
    elif autocommit:
        kwargs['isolation_level'] = 'AUTOCOMMIT'
        if not synchronous and url_obj.get_backend_name() == 'postgresql':
            kwargs['connect_args'] = {'options': '-c synchronous_commit=off'}
    else:
        kwargs['pool_pre_ping'] = True
    engine = sa.create_engine(url, **kwargs)
    if url_obj.get_backend_name() == 'sqlite':
        _setup_sqlite(engine)
    return engine


def get_engine(url=None, autocommit=False, synchronous=True):
    """The process's engine for ``url`` (default: the configured one).

    ``autocommit``: the engine of single-statement writes (the flow log's
    task transitions) on a database server, ``synchronous`` or not; on
    SQLite, the one engine.
    """
    url = url or get_url()
    if not autocommit or url.startswith('sqlite'):
        key = (url, False, True)
    else:
        key = (url, True, bool(synchronous))
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = create_engine(url, echo=CONF.database.connection_debug,
                                   autocommit=key[1], synchronous=key[2])
            _ENGINES[key] = engine
        return engine


def dispose_all():
    """Close every pooled connection (tests, and before a fork)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


@contextlib.contextmanager
def session_scope(url=None):
    """A session whose transaction commits on success, rolls back on error."""
    session = orm.Session(bind=get_engine(url), expire_on_commit=False)
    try:
        with session.begin():
            yield session
    finally:
        session.close()


def for_update(stmt, session):
    """``SELECT ... FOR UPDATE`` where the database has it.

    SQLite has none; its ``BEGIN IMMEDIATE`` already serialises writers.
    """
    if session.get_bind().dialect.name == 'sqlite':
        return stmt
    return stmt.with_for_update()
