"""Volumes on hosts reached by ssh (tests/ssh_fixtures.py machines).

``[volumes]/volume_dir`` is shared storage: the machines see this
machine's file system but for their own root, so the volume directory
(under the test's state directory) is at the same path there, as a
mount of shared storage would be. A machine where something else is
mounted over it (an empty directory: the share not mounted) must refuse
the volume with one line naming the host and the path, before anything
changes.
"""
import os

import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows.plugins import volume_files
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests.functional import volume_helpers as vh
from tests.functional.test_remote_hosts import Cloud
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)


@pytest.fixture
def vcloud(conf, db_url, tmp_path):
    virt.reset()
    faults.clear()
    conf.set_override('plugins', ['volumes'])
    yield Cloud(tmp_path)
    api.wait_all()
    conf.clear_override('plugins')
    faults.clear()
    virt.reset()


def _volume(cloud, fmt='qcow2'):
    vol = api.create_volume(cloud.ctx, 'data', 1, disk_format=fmt)
    vh.fill(vol['path'], fmt)
    return vol


def _where(vm, vol):
    """(the server's host, {(volume, host): connected}, the volume's
    serials in each host's domain definition)."""
    disks = {h: sorted(vh.domain_disks(h, vm) or {})
             for h in ('here', 'far')}
    return (repository.instance_get(vm)['host'], vh.attachments(), disks)


def _unmount_volumes_on(machine):
    """Mount an empty directory over the volume directory, in the
    machine's own namespace only: the share is not mounted there."""
    empty = machine.path('empty')
    machine.run('mkdir -p %s && mount --bind %s %s' % (
        empty, empty, volume_files.volume_dir()))
    assert machine.run('ls -A %s' % volume_files.volume_dir()) == ''


@pytest.mark.parametrize('fmt', ['qcow2', 'raw'])
def test_a_volume_moves_to_and_from_an_ssh_host(vcloud, machines, fmt):
    machine = machines()
    vcloud.local_host('here')
    vcloud.remote_host('far', machine)
    vm = api.create_server(vcloud.ctx, 'vm1', 'small', 'far')['uuid']
    vol = _volume(vcloud, fmt)
    vid = vol['id']
    api.attach_volume(vcloud.ctx, vm, vid)
    assert _where(vm, vol) == ('far', {(vid, 'far'): True},
                               {'here': [], 'far': [vid]})

    # far -> here, revert: connected on here, then back on far.
    api.migrate(vcloud.ctx, vm, host='here', wait=True)
    assert _where(vm, vol) == (
        'here', {(vid, 'far'): False, (vid, 'here'): True},
        {'here': [vid], 'far': []})
    api.revert_resize(vcloud.ctx, vm, wait=True)
    assert _where(vm, vol) == ('far', {(vid, 'far'): True},
                               {'here': [], 'far': [vid]})
    assert state.leaks() == []

    # far -> here, confirm; here -> far, revert; here -> far, confirm.
    api.migrate(vcloud.ctx, vm, host='here', wait=True)
    api.confirm_resize(vcloud.ctx, vm, wait=True)
    assert _where(vm, vol) == ('here', {(vid, 'here'): True},
                               {'here': [vid], 'far': []})
    api.migrate(vcloud.ctx, vm, host='far', wait=True)
    api.revert_resize(vcloud.ctx, vm, wait=True)
    assert _where(vm, vol) == ('here', {(vid, 'here'): True},
                               {'here': [vid], 'far': []})
    api.migrate(vcloud.ctx, vm, host='far', wait=True)
    api.confirm_resize(vcloud.ctx, vm, wait=True)
    assert _where(vm, vol) == ('far', {(vid, 'far'): True},
                               {'here': [], 'far': [vid]})
    assert vh.plugin().audit() == []
    assert state.leaks() == []


def test_a_host_without_the_share_refuses_the_volume(vcloud, machines):
    machine = machines()
    vcloud.local_host('here')
    vcloud.remote_host('far', machine)
    vm = api.create_server(vcloud.ctx, 'vm1', 'small', 'here')['uuid']
    vol = _volume(vcloud)
    vid = vol['id']
    api.attach_volume(vcloud.ctx, vm, vid)
    _unmount_volumes_on(machine)
    before = state.capture(caches=False)

    # A move there is undone: the task fails before it connects.
    with pytest.raises(exception.DiskError) as caught:
        api.migrate(vcloud.ctx, vm, host='far', wait=True)
    message = str(caught.value)
    assert '\n' not in message
    assert 'host far' in message and vol['path'] in message
    assert 'is missing' in message
    assert _where(vm, vol) == ('here', {(vid, 'here'): True},
                               {'here': [vid], 'far': []})
    assert state.capture(caches=False) == before
    assert state.leaks() == []
    assert vh.plugin().audit() == []

    # An attach there is refused, nothing changed.
    other = api.create_server(vcloud.ctx, 'vm2', 'small', 'far')['uuid']
    spare = api.create_volume(vcloud.ctx, 'spare', 1)
    before = state.capture(caches=False)
    with pytest.raises(exception.DiskError,
                       match='host far: .*%s is missing' % spare['path']):
        api.attach_volume(vcloud.ctx, other, spare['id'])
    assert state.capture(caches=False) == before
    assert vh.domain_disks('far', other) == {}


def test_a_file_of_another_size_or_a_link_is_refused(vcloud, tmp_path):
    vcloud.local_host('here')
    vm = api.create_server(vcloud.ctx, 'vm1', 'small', 'here')['uuid']
    raw = api.create_volume(vcloud.ctx, 'raw', 1, disk_format='raw')
    os.truncate(raw['path'], 2 ** 29)
    before = state.capture(caches=False)
    with pytest.raises(exception.DiskError, match='host here: volume %s: '
                       '%s is 536870912 bytes, not 1073741824'
                       % (raw['id'], raw['path'])):
        api.attach_volume(vcloud.ctx, vm, raw['id'])
    assert state.capture(caches=False) == before

    qcow = api.create_volume(vcloud.ctx, 'qcow', 1)
    os.unlink(qcow['path'])
    os.symlink(str(tmp_path), qcow['path'])
    before = state.capture(caches=False)
    with pytest.raises(exception.DiskError, match='refused'):
        api.attach_volume(vcloud.ctx, vm, qcow['id'])
    assert state.capture(caches=False) == before
