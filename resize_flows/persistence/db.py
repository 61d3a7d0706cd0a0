"""One SQLAlchemy engine per database URL per process, and transactions.

SQLite gets WAL mode, foreign keys and ``BEGIN IMMEDIATE`` transactions: a
writer takes the database lock when its transaction starts, so two
compare-and-swap updates or two capacity claims never interleave. PostgreSQL
and MariaDB lock the rows they check (``SELECT ... FOR UPDATE``) instead.
"""
import contextlib
import os
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


def create_engine(url, echo=False):
    """A new engine for ``url``, set up for resize-flows' use."""
    url_obj = sa.engine.make_url(url)
    kwargs = {'echo': echo, 'future': True}
    if url_obj.get_backend_name() == 'sqlite':
        database = url_obj.database
        if database and database != ':memory:':
            os.makedirs(os.path.dirname(os.path.abspath(database)),
                        exist_ok=True)
    else:
        kwargs['pool_pre_ping'] = True
    engine = sa.create_engine(url, **kwargs)
    if url_obj.get_backend_name() == 'sqlite':
        _setup_sqlite(engine)
    return engine


def get_engine(url=None):
    """The process's engine for ``url`` (default: the configured one)."""
    url = url or get_url()
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = create_engine(url, echo=CONF.database.connection_debug)
            _ENGINES[url] = engine
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
