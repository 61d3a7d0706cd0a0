"""Fixtures shared by every tier: a private configuration per test."""
import pytest

from resize_flows import conf as rf_conf

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
