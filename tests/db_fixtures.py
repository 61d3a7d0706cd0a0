"""Throwaway databases on SQLite, PostgreSQL and MariaDB for the tests.

Each test gets a database of its own: a file under its tmp_path for SQLite,
a new ``rf_test_<hex>`` database on 127.0.0.1 for PostgreSQL (user postgres,
trust auth) and MariaDB (root, no password), dropped afterwards.

A server that cannot be reached skips the test, with the reason, on a
developer's machine; where the servers must be there (``CI=true`` or
``RESIZE_FLOWS_REQUIRE_DBS=1``) it fails it instead.
"""
import contextlib
import os
import secrets

import pytest
import sqlalchemy as sa
from sqlalchemy import pool

from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration

BACKENDS = ('sqlite', 'postgresql', 'mysql')

SERVER_URLS = {
    'postgresql': 'postgresql+psycopg2://postgres@127.0.0.1/{name}',
    'mysql': 'mysql+pymysql://root@127.0.0.1/{name}?charset=utf8mb4',
}
_ADMIN_DATABASE = {'postgresql': 'postgres', 'mysql': ''}
_CONNECT_TIMEOUT = 5

# backend -> why it could not be reached, so later tests don't wait again.
_UNREACHABLE = {}


def dbs_required():
    """True where PostgreSQL and MariaDB must be there (CI)."""
    return (os.environ.get('CI', '').lower() == 'true'
            or os.environ.get('RESIZE_FLOWS_REQUIRE_DBS') == '1')


def _unavailable(backend, reason):
    message = '%s is not reachable on 127.0.0.1: %s' % (backend, reason)
    if dbs_required():
        pytest.fail(message + ' (CI=true or RESIZE_FLOWS_REQUIRE_DBS=1: '
                    'this machine must run the tests on every backend)',
                    pytrace=False)
    pytest.skip(message)


def _admin_engine(backend):
    url = SERVER_URLS[backend].format(name=_ADMIN_DATABASE[backend])
    return sa.create_engine(
        url, isolation_level='AUTOCOMMIT', poolclass=pool.NullPool,
        connect_args={'connect_timeout': _CONNECT_TIMEOUT})


def forget_engines():
    """Drop every pooled connection and flow log backend of this process."""
    flowlog.reset()
    db.dispose_all()


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
def throwaway_database(backend, tmp_path):
    """Yield the URL of a new, empty database on ``backend``; drop it after.

    Skips (or fails, see ``dbs_required``) when the server is unreachable.
    """
    if backend == 'sqlite':
        url = 'sqlite:///%s' % (tmp_path / 'rf_test.sqlite')
        try:
            yield url
        finally:
            forget_engines()
        return
    if backend not in SERVER_URLS:
        raise ValueError('unknown backend %r' % backend)
    if backend in _UNREACHABLE:
        _unavailable(backend, _UNREACHABLE[backend])

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
        _unavailable(backend, _UNREACHABLE[backend])

    try:
        yield SERVER_URLS[backend].format(name=name)
    finally:
        forget_engines()
        try:
            with admin.connect() as conn:
                _drop(conn, backend, name)
        finally:
            admin.dispose()


@contextlib.contextmanager
def synced_database(backend, tmp_path, conf):
    """A throwaway database after ``db sync``, set as [database]connection."""
    with throwaway_database(backend, tmp_path) as url:
        conf.set_override('connection', url, group='database')
        try:
            migration.db_sync(url)
            yield url
        finally:
            conf.clear_override('connection', group='database')
