"""The volumes plugin on libvirt's test driver: real files, real
qemu-img and qemu-io; the domains read back through libvirt."""
import os
import shutil

import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows.persistence import volumes as volume_db
from resize_flows.plugins import volume_files
from resize_flows import states
from resize_flows.testing import state
from resize_flows import virt
from tests.functional import volume_helpers as vh


@pytest.fixture
def vcloud(cloud, conf):
    conf.set_override('plugins', ['volumes'])
    yield cloud
    conf.clear_override('plugins')


def _volume(cloud, name='data', size=1, fmt='qcow2', fill=True):
    vol = api.create_volume(cloud.ctx, name, size, disk_format=fmt)
    if fill:
        vh.fill(vol['path'], fmt)
    return vol


def test_create_list_show_delete(vcloud):
    qcow = _volume(vcloud, 'a', 1, 'qcow2', fill=False)
    raw = _volume(vcloud, 'b', 2, 'raw', fill=False)
    for vol, fmt, size in ((qcow, 'qcow2', 1), (raw, 'raw', 2)):
        assert vol['path'] == os.path.join(volume_files.volume_dir(),
                                           'volume-' + vol['id'])
        info = vh.qemu_img_info(vol['path'])
        assert (info['format'], info['virtual-size']) == (fmt, size * 2**30)
        assert os.stat(vol['path']).st_mode & 0o777 == 0o600
        assert vol['status'] == 'available'
    assert [v['name'] for v in api.list_volumes(vcloud.ctx)] == ['a', 'b']
    shown = api.get_volume(vcloud.ctx, 'b')
    assert (shown['id'], shown['attachments']) == (raw['id'], [])
    api.delete_volume(vcloud.ctx, qcow['id'])
    assert not os.path.exists(qcow['path'])
    assert [v['name'] for v in api.list_volumes(vcloud.ctx)] == ['b']
    with pytest.raises(exception.VolumeNotFound):
        api.get_volume(vcloud.ctx, qcow['id'])


def test_attach_then_detach(vcloud):
    vm = vcloud.server()['uuid']
    vol = _volume(vcloud)
    att = api.attach_volume(vcloud.ctx, vm, 'data')
    assert (att['host'], att['connected']) == ('host1', True)
    disks = vh.domain_disks('host1', vm)
    assert disks == {vol['id']: ('vdd', vol['path'],
                                 'ua-volumes-' + vol['id'])}
    assert api.get_volume(vcloud.ctx, vol['id'])['status'] == 'in-use'
    assert vh.plugin().audit() == []
    assert state.leaks() == []
    # Attached already, to this server: nothing more (a re-run).
    api.attach_volume(vcloud.ctx, vm, vol['id'])
    assert vh.attachments() == {(vol['id'], 'host1'): True}

    api.detach_volume(vcloud.ctx, vm, vol['id'])
    assert vh.domain_disks('host1', vm) == {}
    assert vh.attachments() == {}
    assert api.get_volume(vcloud.ctx, vol['id'])['status'] == 'available'
    assert os.path.exists(vol['path'])
    assert vh.plugin().audit() == []


def _moved(cloud, vm, operation):
    if operation == 'resize':
        return api.resize(cloud.ctx, vm, 'big', wait=True)['migration']
    return api.migrate(cloud.ctx, vm, wait=True)['migration']


@pytest.mark.parametrize('operation', ['resize', 'migrate'])
@pytest.mark.parametrize('resolution', ['confirm', 'revert'])
def test_move_keeps_the_volume(vcloud, tmp_path, operation, resolution):
    vm = vcloud.server()['uuid']
    vol = _volume(vcloud)
    api.attach_volume(vcloud.ctx, vm, vol['id'])
    copy = str(tmp_path / 'copy')
    shutil.copyfile(vol['path'], copy)
    where = vh.inode(vol['path'])
    before = state.capture(caches=False), vh.plugin().state()

    mig = _moved(vcloud, vm, operation)
    assert (mig['source_compute'], mig['dest_compute']) == ('host1', 'host2')
    # Connected on the destination only; the source keeps its record.
    assert vh.attachments() == {(vol['id'], 'host1'): False,
                                (vol['id'], 'host2'): True}
    assert vh.domain_disks('host2', vm) == {
        vol['id']: ('vdd', vol['path'], 'ua-volumes-' + vol['id'])}
    assert vh.domain_disks('host1', vm) == {}       # the stashed source
    assert vh.plugin().audit() == []
    assert state.leaks() == []

    if resolution == 'confirm':
        api.confirm_resize(vcloud.ctx, vm, wait=True)
        assert vh.attachments() == {(vol['id'], 'host2'): True}
        assert vh.domain_disks('host1', vm) is None
        assert vh.domain_disks('host2', vm) == {
            vol['id']: ('vdd', vol['path'], 'ua-volumes-' + vol['id'])}
    else:
        api.revert_resize(vcloud.ctx, vm, wait=True)
        assert vh.attachments() == {(vol['id'], 'host1'): True}
        assert vh.domain_disks('host2', vm) is None
        assert vh.domain_disks('host1', vm) == {
            vol['id']: ('vdd', vol['path'], 'ua-volumes-' + vol['id'])}
        assert (state.capture(caches=False), vh.plugin().state()) == before
    assert vh.plugin().audit() == []
    assert state.leaks() == []
    # Never copied: the same file, the same content.
    assert vh.inode(vol['path']) == where
    assert vh.same_content(vol['path'], copy)
    for host in ('host1', 'host2'):
        root = repository.host_get(host)['instances_path']
        assert [f for _d, _s, files in os.walk(root) for f in files
                if f.startswith('volume-')] == []


def test_resize_on_one_host_changes_no_attachment(vcloud, conf):
    conf.set_override('allow_resize_to_same_host', True, group='compute')
    vm = vcloud.server()['uuid']
    vcloud.server('other', host='host2')
    # host2 has no room for big: the resize stays on host1.
    repository.host_set_enabled('host2', False)
    vol = _volume(vcloud)
    api.attach_volume(vcloud.ctx, vm, vol['id'])
    mig = _moved(vcloud, vm, 'resize')
    assert mig['dest_compute'] == 'host1'
    assert vh.attachments() == {(vol['id'], 'host1'): True}
    assert vol['id'] in vh.domain_disks('host1', vm)
    api.revert_resize(vcloud.ctx, vm, wait=True)
    assert vh.attachments() == {(vol['id'], 'host1'): True}
    assert vol['id'] in vh.domain_disks('host1', vm)
    _moved(vcloud, vm, 'resize')
    api.confirm_resize(vcloud.ctx, vm, wait=True)
    assert vh.attachments() == {(vol['id'], 'host1'): True}
    assert vol['id'] in vh.domain_disks('host1', vm)
    assert vh.plugin().audit() == []


def test_two_volumes_and_a_stopped_server(vcloud):
    vm = vcloud.server(power_on=False)['uuid']
    one = _volume(vcloud, 'one')
    two = _volume(vcloud, 'two', fmt='raw')
    api.attach_volume(vcloud.ctx, vm, 'one')
    api.attach_volume(vcloud.ctx, vm, 'two')
    targets = {s: d[0] for s, d in vh.domain_disks('host1', vm).items()}
    assert sorted(targets.values()) == ['vdd', 'vde']
    api.migrate(vcloud.ctx, vm, wait=True)
    assert set(vh.domain_disks('host2', vm)) == {one['id'], two['id']}
    assert repository.instance_get(vm)['vm_state'] == states.RESIZED
    api.revert_resize(vcloud.ctx, vm, wait=True)
    assert set(vh.domain_disks('host1', vm)) == {one['id'], two['id']}
    api.detach_volume(vcloud.ctx, vm, 'one')
    assert set(vh.domain_disks('host1', vm)) == {two['id']}
    assert vh.plugin().audit() == []


def test_server_delete_makes_the_volume_available(vcloud):
    vm = vcloud.server()['uuid']
    vol = _volume(vcloud)
    api.attach_volume(vcloud.ctx, vm, vol['id'])
    api.migrate(vcloud.ctx, vm, wait=True)
    api.delete_server(vcloud.ctx, vm)
    assert vh.attachments() == {}
    assert api.get_volume(vcloud.ctx, vol['id'])['status'] == 'available'
    assert os.path.exists(vol['path'])
    assert vh.plugin().audit() == []
    # And it can be attached to another server.
    other = vcloud.server('vm2')['uuid']
    api.attach_volume(vcloud.ctx, other, vol['id'])
    assert vol['id'] in vh.domain_disks('host1', other)


def test_audit_finds_what_is_wrong(vcloud):
    vm = vcloud.server()['uuid']
    vol = _volume(vcloud)
    api.attach_volume(vcloud.ctx, vm, vol['id'])
    assert vh.plugin().audit() == []
    # The guest loses the disk behind the records' back.
    virt.get_driver(repository.host_get('host1')).update_devices(
        vm, 'volumes', [])
    found = vh.plugin().audit()
    assert len(found) == 1 and 'lacks the disk' in found[0]
    os.unlink(vol['path'])
    found = vh.plugin().audit()
    assert any('no file' in f for f in found), found
    volume_db.connect(vm, 'host1', 'host2', drop_off=False)
    found = vh.plugin().audit()
    assert any('the instance lives on host1' in f for f in found), found
