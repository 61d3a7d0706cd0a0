"""One SQLAlchemy engine per database URL per process, and transactions.

SQLite gets WAL mode, foreign keys and ``BEGIN IMMEDIATE`` transactions: a
writer takes the database lock when its transaction starts, so two
compare-and-swap updates or two capacity claims never interleave. PostgreSQL
and MariaDB lock the rows they check (``SELECT ... FOR UPDATE``) instead.
Reads (:func:`get_reader`, ``session_scope(read_only=True)``) begin a
plain (deferred) transaction on SQLite: a WAL reader takes no lock, so a
process that holds the write lock, even one stopped, never blocks them. A
writer waits ``[database]/sqlite_busy_timeout`` seconds for the lock, then
fails with :class:`~resize_flows.exception.DatabaseLocked`; an SQLite
file that cannot be opened, read or written gives
:class:`~resize_flows.exception.DatabaseError`: one line naming the file
and the cause, never SQLAlchemy's error with its SQL.

A database server that goes away (restarted, failed over): pooled
connections are pinged before use (``pool_pre_ping``) on the
transactional engine, a transaction (:func:`session_scope`) takes its
connection before its body runs and waits for the server, and what is
safely repeatable as a whole (:func:`retrying`: reads, the flow log's
writes, lease rows) is run again on a lost connection; each up to
``[database]/max_retries`` times, ``retry_interval`` seconds apart
(:func:`is_disconnect` tells such an error). A transaction cut in its
middle is rolled back by the server and its error raised.
"""
import contextlib
import functools
import logging
import os
import stat
import threading
import time

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import orm

from resize_flows.conf import CONF
from resize_flows import exception

LOG = logging.getLogger(__name__)

#: The execution option that makes an SQLite transaction a deferred one.
READ_ONLY = 'resize_flows_read_only'
BUSY_TIMEOUT = 'resize_flows_busy_timeout_ms'

_LOCK = threading.Lock()
_ENGINES = {}
_READERS = {}


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
    try:
        if not os.path.isdir(folder):
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            try:
                os.mkdir(folder, 0o711)
            except FileExistsError:
                if not os.path.isdir(folder):
                    raise
    except OSError as e:
        raise exception.DatabaseError(
            database=database, reason='cannot make its directory %s: %s' % (
                folder, e.strerror or e))
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


# What SQLite says, and what we tell (the first that the error contains).
_SQLITE_CAUSES = (
    ('unable to open database file',
     'cannot open or create the file (is its directory there and '
     'writable?)'),
    ('file is not a database', 'the file is not an SQLite database'),
    ('malformed', 'the database is corrupt (disk image malformed)'),
    ('readonly database', 'the database is read-only here'),
    ('disk i/o error', 'disk I/O error'),
    ('database or disk is full', 'the disk is full'),
)


def _sqlite_error(path, error):
    """Our one-line error for an SQLite error, or None for an error that
    is not about the database file itself (a constraint, no such table)."""
    text = str(getattr(error, 'orig', None) or error).strip()
    low = text.lower()
    if 'database is locked' in low or 'database is busy' in low:
        return exception.DatabaseLocked(
            database=path, reason=text,
            seconds=_format_seconds(CONF.database.sqlite_busy_timeout))
    for needle, cause in _SQLITE_CAUSES:
        if needle in low:
            return exception.DatabaseError(database=path, reason=cause)
    return None


def _busy_timeout_ms():
    return int(1000 * CONF.database.sqlite_busy_timeout)


def _format_seconds(value):
    return ('%g' % value) if value is not None else '?'


def _setup_sqlite(engine, path):
    @event.listens_for(engine, 'connect')
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute('PRAGMA foreign_keys=ON')
            _record.info[BUSY_TIMEOUT] = _busy_timeout_ms()
            cur.execute('PRAGMA busy_timeout=%d' % _record.info[BUSY_TIMEOUT])
            cur.execute('PRAGMA journal_mode=WAL')
            cur.execute('PRAGMA synchronous=NORMAL')
        except Exception as e:
            translated = _sqlite_error(path, e)
            if translated is not None:
                raise translated from e
            raise
        finally:
            cur.close()

    @event.listens_for(engine, 'checkout')
    def _on_checkout(dbapi_conn, record, _proxy):
        # The option may have changed since the connection was made (a
        # configuration read again in this process).
        wanted = _busy_timeout_ms()
        if record.info.get(BUSY_TIMEOUT) != wanted:
            cur = dbapi_conn.cursor()
            try:
                cur.execute('PRAGMA busy_timeout=%d' % wanted)
            finally:
                cur.close()
            record.info[BUSY_TIMEOUT] = wanted

    @event.listens_for(engine, 'begin')
    def _on_begin(conn):
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql('BEGIN')
        else:
            conn.exec_driver_sql('BEGIN IMMEDIATE')

    @event.listens_for(engine, 'handle_error')
    def _on_error(context):
        translated = _sqlite_error(path, context.original_exception)
        if translated is not None:
            raise translated from context.original_exception


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
    database = url_obj.database
    if url_obj.get_backend_name() == 'sqlite':
        if database and database != ':memory:':
            try:
                _private_sqlite_file(database)
            except OSError as e:
                raise exception.DatabaseError(
                    database=database, reason='cannot open or create the '
                    'file: %s' % (e.strerror or e))
    elif autocommit:
        kwargs['isolation_level'] = 'AUTOCOMMIT'
        if not synchronous and url_obj.get_backend_name() == 'postgresql':
            kwargs['connect_args'] = {'options': '-c synchronous_commit=off'}
    else:
        kwargs['pool_pre_ping'] = True
    engine = sa.create_engine(url, **kwargs)
    if url_obj.get_backend_name() == 'sqlite':
        _setup_sqlite(engine, database or ':memory:')
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


def get_reader(url=None):
    """The engine of ``url`` for transactions that only read: on SQLite
    they begin deferred (no lock taken; WAL readers are never blocked);
    elsewhere it is :func:`get_engine`'s."""
    engine = get_engine(url)
    with _LOCK:
        reader = _READERS.get(engine)
        if reader is None:
            reader = engine.execution_options(**{READ_ONLY: True})
            _READERS[engine] = reader
        return reader


def dispose_all():
    """Close every pooled connection (tests, and before a fork)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
        _READERS.clear()


# What a lost or refused connection says (PostgreSQL, MariaDB), lower case.
_DISCONNECTED = (
    'connection refused', 'could not connect', 'server closed the '
    'connection', 'terminating connection', 'connection already closed',
    'the database system is shutting down', 'the database system is '
    'starting up', 'the database system is in recovery', 'lost connection',
    "can't connect", 'server has gone away', 'connection reset',
    'broken pipe', 'no connection to the server', 'ssl syscall error',
    'connection timed out', 'cannot connect now')


def is_disconnect(error, _depth=0):
    """True for an error that says the connection to the database server
    was lost or could not be made (SQLAlchemy's, or one that it caused,
    such as TaskFlow's StorageFailure); never for SQLite."""
    if error is None or _depth > 5:
        return False
    if isinstance(error, sa.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, (sa.exc.OperationalError,
                              sa.exc.InterfaceError)):
            text = str(error.orig or error).lower()
            return any(needle in text for needle in _DISCONNECTED)
        return False
    return is_disconnect(error.__cause__, _depth + 1)


def _wait_before_retry(error, tries, what):
    """Sleep before try ``tries`` + 1 of ``what`` after a lost connection;
    False when [database]/max_retries are spent or the error is another."""
    if not is_disconnect(error) or tries >= CONF.database.max_retries:
        return False
    LOG.warning('lost the database connection in %s (%s); trying again '
                '(%d of %d) in %gs', what, ' '.join(str(error).split()[:12]),
                tries + 1, CONF.database.max_retries,
                CONF.database.retry_interval)
    time.sleep(CONF.database.retry_interval)
    return True


def retrying(func):
    """Run ``func`` again, as a whole, when it fails on a lost database
    connection (see :func:`is_disconnect`), up to ``[database]/
    max_retries`` times. Only for what is safely repeatable: reads, and
    writes whose second run does what the first did (a row set to given
    values, a delete), in transactions of their own."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        tries = 0
        while True:
            try:
                return func(*args, **kwargs)
            except Exception as e:
                if not _wait_before_retry(e, tries, func.__qualname__):
                    raise
                tries += 1
    return wrapper


def _begun(bind):
    """A session on ``bind`` whose transaction has begun with a
    connection, before anything of the caller's runs: a connection lost
    (the pool's pre-ping replaces it) or refused (the server restarting)
    is waited for, up to [database]/max_retries times."""
    tries = 0
    while True:
        session = orm.Session(bind=bind, expire_on_commit=False)
        transaction = session.begin()
        try:
            session.connection()
            return session, transaction
        except Exception as e:
            session.close()
            if not _wait_before_retry(e, tries, 'a transaction\'s start'):
                raise
            tries += 1


@contextlib.contextmanager
def session_scope(url=None, read_only=False):
    """A session whose transaction commits on success, rolls back on error.

    ``read_only``: the session only reads (on SQLite its transaction takes
    no lock). A session that reads and then writes must not say so: its
    ``BEGIN IMMEDIATE`` takes the write lock before it reads what it
    checks. Its connection is taken before the body runs (see
    :func:`_begun`); the body itself is never run twice.
    """
    bind = get_reader(url) if read_only else get_engine(url)
    session, transaction = _begun(bind)
    try:
        with transaction:
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
