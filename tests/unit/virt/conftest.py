"""Two simulated hosts on libvirt's test driver, with real qcow2 disks."""
import uuid

import pytest

from resize_flows import virt
from resize_flows.virt.libvirt import local


def _driver(name):
    host = dict(local.create_local_host(name, 'test'), name=name)
    return virt.get_driver(host)


@pytest.fixture
def src(conf):
    drv = _driver('src')
    yield drv
    virt.reset()


@pytest.fixture
def dst(conf, src):
    return _driver('dst')


@pytest.fixture
def instance():
    return {'uuid': str(uuid.uuid4()), 'name': 'vm-under-test'}

