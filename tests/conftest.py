"""Fixtures shared by every tier: a private configuration per test, and
throwaway databases (SQLite, PostgreSQL, MariaDB); sweeps sampled in a
plain run."""
import collections
import os

import pytest

from resize_flows import conf as rf_conf
from tests import db_fixtures

# Runs a fresh pytest in tests of our own pytest plugin.
pytest_plugins = ['pytester']

_REGISTERED = False


def _register():
    global _REGISTERED
    if not _REGISTERED:
        rf_conf.register_opts(rf_conf.CONF)
        _REGISTERED = True


@pytest.fixture
def conf(tmp_path):
    """CONF parsed with no files, its state under this test's tmp_path,
    hosts on libvirt's test driver. Overrides are undone afterwards."""
    _register()
    CONF = rf_conf.CONF
    CONF([], project='resize-flows', default_config_files=[],
         default_config_dirs=[])
    CONF.set_override('state_dir', str(tmp_path / 'state'))
    CONF.set_override('local_hypervisor', 'test', group='libvirt')
    CONF.set_override('shutdown_timeout', 0, group='compute')
    yield CONF
    CONF.clear_override('state_dir')
    CONF.clear_override('local_hypervisor', group='libvirt')
    CONF.clear_override('shutdown_timeout', group='compute')
    CONF.reset()


# Databases: throwaway ones per test, helpers in tests/db_fixtures.py.


@pytest.fixture
def db_url(conf, tmp_path):
    """A migrated SQLite database of this test's, set as CONF's connection."""
    with db_fixtures.synced_database('sqlite', tmp_path, conf) as url:
        yield url


@pytest.fixture(params=db_fixtures.BACKENDS, ids=db_fixtures.BACKENDS)
def any_db_url(request, conf, tmp_path):
    """As db_url, once on each of SQLite, PostgreSQL and MariaDB.

    PostgreSQL and MariaDB are skipped when their server is unreachable,
    unless CI=true or RESIZE_FLOWS_REQUIRE_DBS=1, where that fails.
    """
    with db_fixtures.synced_database(request.param, tmp_path, conf) as url:
        yield url


# Sweeps: a parametrized test marked ``sweep`` (a fault at every task and
# point of a flow, say) runs half its cases in a plain run (``make
# test``): case i when i % 2 == (i // 2 + offset) % 2, which takes one of
# each pair of neighbours, alternately the first and the second, so that
# with the point as the innermost parameter every task is still hit once.
# ``sweep(offset=1)`` takes the other half: two tests over the same cases
# (resume and rollback of a crash, say) then share them out. The other
# cases are marked ``crash_matrix``: ``make crash-matrix`` (``-m
# crash_matrix``, as CI runs it) runs them, as does
# RESIZE_FLOWS_CRASH_MATRIX=full in any run.


def full_run(config):
    """Whether this run is the whole of every sweep and crash matrix
    (``-m crash_matrix`` or RESIZE_FLOWS_CRASH_MATRIX=full)."""
    markexpr = config.getoption('markexpr', '') or ''
    return (os.environ.get('RESIZE_FLOWS_CRASH_MATRIX') == 'full' or
            ('crash_matrix' in markexpr and
             'not crash_matrix' not in markexpr))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    sweeps = collections.defaultdict(list)
    for item in items:
        marker = item.get_closest_marker('sweep')
        if marker is not None and hasattr(item, 'callspec'):
            sweeps[(item.path, item.originalname)].append(
                (item, marker.kwargs.get('offset', 0)))
    full = full_run(config)
    skip = pytest.mark.skip(reason='the rest of a sweep: runs with -m '
                            'crash_matrix or RESIZE_FLOWS_CRASH_MATRIX=full')
    for cases in sweeps.values():
        for i, (item, offset) in enumerate(cases):
            if i % 2 != (i // 2 + offset) % 2:
                item.add_marker(pytest.mark.crash_matrix)
                if not full:
                    item.add_marker(skip)
