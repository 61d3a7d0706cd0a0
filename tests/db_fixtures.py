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

import pytest

from resize_flows.persistence import migration
from resize_flows.testing import databases

BACKENDS = databases.BACKENDS
forget_engines = databases.forget_engines


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


@contextlib.contextmanager
def throwaway_database(backend, tmp_path):
    """Yield the URL of a new, empty database on ``backend``; drop it after.

    Skips (or fails, see ``dbs_required``) when the server is unreachable.
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
