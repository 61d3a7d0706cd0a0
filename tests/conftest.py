"""Fixtures shared by every tier: a private configuration per test, and
throwaway databases (SQLite, PostgreSQL, MariaDB)."""
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
