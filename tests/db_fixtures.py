"""Throwaway databases on SQLite, PostgreSQL and MariaDB for the tests.

Each test gets a database of its own: a file under its tmp_path for SQLite,
a new ``rf_test_<hex>`` database on 127.0.0.1 for PostgreSQL (user postgres,
trust auth) and MariaDB (root, no password), dropped afterwards.

A server that cannot be reached skips the test, with the reason, on a
developer's machine; where the servers must be there (``CI=true`` or
``RESIZE_FLOWS_REQUIRE_DBS=1``) it fails it instead.
"""
import contextlib

import sqlalchemy as sa

from resize_flows.persistence import migration
from resize_flows.testing import databases
from tests import needs

BACKENDS = databases.BACKENDS
forget_engines = databases.forget_engines


def _unavailable(backend, reason):
    needs.unavailable(
        '%s is not reachable on 127.0.0.1: %s' % (backend, reason),
        'RESIZE_FLOWS_REQUIRE_DBS',
        'this machine must run the tests on every backend')


@contextlib.contextmanager
def throwaway_database(backend, tmp_path):
    """Yield the URL of a new, empty database on ``backend``; drop it after.

    Skips (or fails, see :mod:`tests.needs`) when the server is
    unreachable.
    """
    try:
        with databases.throwaway(backend, tmp_path) as url:
            yield url
    except databases.DatabaseUnavailable as exc:
        _unavailable(backend, str(exc))


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


@contextlib.contextmanager
def atom_writes(engine):
    """The list of UPDATE statements on ``flow_atoms`` that run on the
    SQLAlchemy ``engine`` inside the block (a flow log's writer)."""
    seen = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith('UPDATE FLOW_ATOMS'):
            seen.append(statement)

    sa.event.listen(engine, 'before_cursor_execute', record)
    try:
        yield seen
    finally:
        sa.event.remove(engine, 'before_cursor_execute', record)
