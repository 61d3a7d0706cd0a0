"""Bad requests of the volumes plugin: one line, nothing changed (the
records, the hypervisors, the instance directories, the volume files)."""
import os

import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows.plugins import volume_files
from resize_flows import states
from resize_flows.testing import state
from tests.functional import volume_helpers as vh


@pytest.fixture
def setup(cloud, conf):
    """(cloud, vm on host1 with volume 'used', vm2 on host2, volume
    'free', volume 'theirs' of project 'other')."""
    conf.set_override('plugins', ['volumes'])
    vm = cloud.server()['uuid']
    vm2 = cloud.server('vm2', host='host2')['uuid']
    used = api.create_volume(cloud.ctx, 'used', 1)
    free = api.create_volume(cloud.ctx, 'free', 1, disk_format='raw')
    theirs = api.create_volume(cloud.member('other'), 'theirs', 1)
    api.attach_volume(cloud.ctx, vm, 'used')
    yield cloud, vm, vm2, used, free, theirs
    conf.clear_override('plugins')


def _everything():
    folder = volume_files.volume_dir()
    files = {name: (os.lstat(os.path.join(folder, name)).st_ino,
                    os.path.islink(os.path.join(folder, name)))
             for name in os.listdir(folder)}
    return state.capture(), vh.plugin().state(), files


def _refused(call, error, text=None):
    before = _everything()
    with pytest.raises(error) as e:
        call()
    assert '\n' not in str(e.value)
    if text:
        assert text in str(e.value)
    assert _everything() == before
    return str(e.value)


@pytest.mark.parametrize('size, fmt, text', [
    (0, 'qcow2', 'size must be a whole number >= 1'),
    (-1, 'qcow2', 'size must be a whole number >= 1'),
    ('x', 'qcow2', "not 'x'"),
    (True, 'qcow2', 'size must be a whole number'),
    (2 ** 40, 'qcow2', 'size must be at most'),
    (1, 'vmdk', "a volume is qcow2 or raw, not 'vmdk'"),
    (1, None, 'a volume is qcow2 or raw, not None'),
])
def test_bad_create(setup, size, fmt, text):
    cloud = setup[0]
    _refused(lambda: api.create_volume(cloud.ctx, 'bad', size, fmt),
             exception.InvalidInput, text)


def test_bad_name(setup):
    cloud = setup[0]
    _refused(lambda: api.create_volume(cloud.ctx, '', 1),
             exception.InvalidInput, 'volume name')


def test_unknown_and_another_projects_volume(setup):
    cloud, vm, vm2, used, free, theirs = setup
    member = cloud.member()
    _refused(lambda: api.attach_volume(cloud.ctx, vm, 'nope'),
             exception.VolumeNotFound, 'Volume nope could not be found.')
    for call in (lambda: api.attach_volume(member, vm, theirs['id']),
                 lambda: api.get_volume(member, theirs['id']),
                 lambda: api.delete_volume(member, theirs['id'])):
        _refused(call, exception.VolumeNotFound, theirs['id'])
    assert [v['name'] for v in api.list_volumes(member)] == ['free', 'used']
    # The member may attach its own project's volume.
    api.attach_volume(member, vm2, 'free')
    assert vh.attachments()[(free['id'], 'host2')] is True


def test_attached_elsewhere_and_delete_attached(setup):
    cloud, vm, vm2, used, free, theirs = setup
    _refused(lambda: api.attach_volume(cloud.ctx, vm2, 'used'),
             exception.VolumeInUse, 'attached to server %s' % vm)
    _refused(lambda: api.delete_volume(cloud.ctx, 'used'),
             exception.VolumeInUse, 'attached to server %s' % vm)
    _refused(lambda: api.detach_volume(cloud.ctx, vm2, 'used'),
             exception.VolumeNotAttached)
    _refused(lambda: api.detach_volume(cloud.ctx, vm, 'free'),
             exception.VolumeNotAttached)


def test_attach_and_detach_during_a_move(setup):
    cloud, vm, vm2, used, free, theirs = setup
    api.migrate(cloud.ctx, vm, wait=True)
    assert repository.instance_get(vm)['vm_state'] == states.RESIZED
    _refused(lambda: api.attach_volume(cloud.ctx, vm, 'free'),
             exception.InstanceInvalidState, 'resized')
    _refused(lambda: api.detach_volume(cloud.ctx, vm, 'used'),
             exception.InstanceInvalidState, 'resized')
    # A task under way (a move that has just begun).
    repository.instance_update(vm2, {'task_state': states.RESIZE_PREP})
    _refused(lambda: api.attach_volume(cloud.ctx, vm2, 'free'),
             exception.InstanceInvalidState, states.RESIZE_PREP)


def test_the_plugin_must_be_enabled(setup, conf):
    cloud, vm, vm2, used, free, theirs = setup
    conf.set_override('plugins', [])
    _refused(lambda: api.attach_volume(cloud.ctx, vm2, 'free'),
             exception.InvalidInput, 'the volumes plugin is not enabled')


def test_a_volume_file_that_is_a_link_is_refused(setup, tmp_path):
    cloud, vm, vm2, used, free, theirs = setup
    target = tmp_path / 'roots-file'
    target.write_bytes(b'secret')
    os.unlink(free['path'])
    os.symlink(str(target), free['path'])
    _refused(lambda: api.attach_volume(cloud.ctx, vm2, 'free'),
             exception.DiskError, 'refused')
    assert target.read_bytes() == b'secret'
    # The audit says so too.
    assert any(free['id'] in f and 'is a symbolic link' in f
               for f in vh.plugin().audit())


def test_an_attach_whose_hypervisor_fails_is_undone(setup, monkeypatch):
    cloud, vm, vm2, used, free, theirs = setup
    from resize_flows.virt.libvirt import driver as libvirt_driver
    real = libvirt_driver.LibvirtDriver.update_devices
    calls = []

    def failing_once(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            real(self, *args, **kwargs)     # the change is made, then
            raise exception.HypervisorError(host=self.host, reason='boom')
        return real(self, *args, **kwargs)
    monkeypatch.setattr(libvirt_driver.LibvirtDriver, 'update_devices',
                        failing_once)
    _refused(lambda: api.attach_volume(cloud.ctx, vm2, 'free'),
             exception.HypervisorError, 'boom')
    assert len(calls) == 2
    assert free['id'] not in vh.domain_disks('host2', vm2)
    assert vh.plugin().audit() == []
