"""Throwaway databases on SQLite, PostgreSQL and MariaDB.

For test suites and benchmarks: :func:`throwaway` gives the URL of a new,
empty database (a file for SQLite; ``rf_test_<hex>`` on 127.0.0.1 for
PostgreSQL, user postgres with trust auth, and for MariaDB, root without a
password) and drops it afterwards. A server that cannot be reached raises
:class:`DatabaseUnavailable` with the reason.
"""
import contextlib
import os
import secrets

import sqlalchemy as sa
from sqlalchemy import pool

from resize_flows.persistence import db
from resize_flows.persistence import flowlog

BACKENDS = ('sqlite', 'postgresql', 'mysql')

SERVER_URLS = {
    'postgresql': 'postgresql+psycopg2://postgres@127.0.0.1/{name}',
    'mysql': 'mysql+pymysql://root@127.0.0.1/{name}?charset=utf8mb4',
}
_ADMIN_DATABASE = {'postgresql': 'postgres', 'mysql': ''}
_CONNECT_TIMEOUT = 5

# backend -> why it could not be reached, so later calls don't wait again.
_UNREACHABLE = {}


class DatabaseUnavailable(Exception):
    """The database server of a backend cannot be reached."""


def forget_engines():
    """Drop every pooled connection and flow log backend of this process."""
    flowlog.reset()
    db.dispose_all()


def _admin_engine(backend):
    url = SERVER_URLS[backend].format(name=_ADMIN_DATABASE[backend])
    return sa.create_engine(
        url, isolation_level='AUTOCOMMIT', poolclass=pool.NullPool,
        connect_args={'connect_timeout': _CONNECT_TIMEOUT})


def _drop(conn, backend, name):
    if backend == 'postgresql':
        conn.execute(sa.text(
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
            'WHERE datname = :name AND pid <> pg_backend_pid()'),
            {'name': name})
        conn.exec_driver_sql('DROP DATABASE IF EXISTS "%s"' % name)
    else:
        # A connection left in a transaction would hold a metadata lock
        # that makes DROP DATABASE wait for ever.
        ids = conn.execute(sa.text(
            'SELECT id FROM information_schema.processlist '
            'WHERE db = :name AND id <> CONNECTION_ID()'),
            {'name': name}).scalars().all()
        for thread_id in ids:
            with contextlib.suppress(sa.exc.DBAPIError):
                conn.exec_driver_sql('KILL %d' % int(thread_id))
        conn.exec_driver_sql('DROP DATABASE IF EXISTS `%s`' % name)


@contextlib.contextmanager
def throwaway(backend, directory):
    """Yield the URL of a new, empty database on ``backend`` (SQLite: a
    file in ``directory``); drop it afterwards."""
    if backend == 'sqlite':
        path = os.path.join(str(directory),
                            'rf_%s.sqlite' % secrets.token_hex(4))
        try:
            yield 'sqlite:///' + path
        finally:
            forget_engines()
        return
    if backend not in SERVER_URLS:
        raise ValueError('unknown backend %r' % backend)
    if backend in _UNREACHABLE:
        raise DatabaseUnavailable(_UNREACHABLE[backend])
    name = 'rf_test_' + secrets.token_hex(6)
    admin = None
    try:
        admin = _admin_engine(backend)
        with admin.connect() as conn:
            if backend == 'postgresql':
                conn.exec_driver_sql('CREATE DATABASE "%s"' % name)
            else:
                conn.exec_driver_sql(
                    'CREATE DATABASE `%s` CHARACTER SET utf8mb4' % name)
    except (ImportError, sa.exc.OperationalError,
            sa.exc.InterfaceError) as exc:
        lines = str(getattr(exc, 'orig', None) or exc).strip().splitlines()
        _UNREACHABLE[backend] = lines[0] if lines else type(exc).__name__
        if admin is not None:
            admin.dispose()
    if backend in _UNREACHABLE:
        # Outside the except block: the report is the reason, not a chain.
        raise DatabaseUnavailable(_UNREACHABLE[backend])
    try:
        yield SERVER_URLS[backend].format(name=name)
    finally:
        forget_engines()
        try:
            with admin.connect() as conn:
                _drop(conn, backend, name)
        finally:
            admin.dispose()
