"""The flows on image-backed servers (test-driver hosts, real qemu-img):
a server with ephemeral, swap, a config drive and a kernel resized to
another host and confirmed or reverted, migrated; a crash in the middle
of CopyDisk resumed; a fault before and after each task of a resize
undone to the snapshot of the cloud from before."""
import os
import subprocess
import time

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import sparsecopy
from tests.unit.virt import imagehelp

GiB = 1024 ** 3
MiB = 1024 ** 2
KiB = 1024


@pytest.fixture
def icloud(cloud, tmp_path):
    made = imagehelp.make_image(str(tmp_path / 'upload'))
    cloud.image = api.create_image(cloud.ctx, 'img', made['path'],
                                   kernel=made['kernel_path'],
                                   ramdisk=made['ramdisk_path'])
    api.create_flavor(cloud.ctx, 'full', 1, 64, 1, ephemeral_gb=1,
                      swap_mb=16)
    api.create_flavor(cloud.ctx, 'fuller', 2, 128, 2, ephemeral_gb=2,
                      swap_mb=32)
    return cloud


def _server(cloud, power_on=True):
    vm = api.create_server(cloud.ctx, 'vm1', 'full', 'host1',
                           power_on=power_on, image='img',
                           config_drive=True)
    folder = _driver('host1').instance_dir(vm['uuid'])
    for name, pattern in ((layout.DISK, 0xa1), (layout.EPHEMERAL, 0xb1)):
        subprocess.run(['qemu-io', '-f', 'qcow2', '-c',
                        'write -P 0x%02x 4M 1M' % pattern,
                        os.path.join(folder, name)], check=True,
                       capture_output=True)
    return vm


def _driver(host):
    return virt.get_driver(repository.host_get(host))


def _has_data(host, uuid):
    folder = _driver(host).instance_dir(uuid)
    for name, pattern in ((layout.DISK, 0xa1), (layout.EPHEMERAL, 0xb1)):
        proc = subprocess.run(['qemu-io', '-f', 'qcow2', '-c',
                               'read -P 0x%02x 4M 1M' % pattern,
                               os.path.join(folder, name)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or 'failed' in proc.stdout:
            return False
    return True


def _sizes(host, uuid):
    folder = _driver(host).instance_dir(uuid)
    return tuple(imagehelp.qemu_info(os.path.join(folder, n))[
        'virtual-size'] for n in layout.VIRTIO_DISKS)


def test_resize_then_confirm(icloud):
    vm = _server(icloud)
    result = api.resize(icloud.ctx, vm['uuid'], 'fuller', wait=True)
    assert result['flow_state'] == tf_states.SUCCESS
    assert repository.instance_get(vm['uuid'])['host'] == 'host2'
    assert _sizes('host2', vm['uuid']) == (2 * GiB, 2 * GiB, 32 * MiB)
    assert _has_data('host2', vm['uuid'])
    assert state.leaks() == []
    base = os.path.join(_driver('host1').instances_path, layout.BASE_DIR)
    cached = sorted(os.listdir(base))
    api.confirm_resize(icloud.ctx, vm['uuid'], wait=True)
    assert sorted(os.listdir(base)) == cached
    assert _driver('host1').list_instance_dirs() == [layout.BASE_DIR]
    assert state.leaks() == []


def test_resize_then_revert(icloud):
    vm = _server(icloud)
    before = state.capture()
    api.resize(icloud.ctx, vm['uuid'], 'fuller', wait=True)
    api.revert_resize(icloud.ctx, vm['uuid'], wait=True)
    assert repository.instance_get(vm['uuid'])['host'] == 'host1'
    assert _sizes('host1', vm['uuid']) == (1 * GiB, 1 * GiB, 16 * MiB)
    assert _has_data('host1', vm['uuid'])
    after = state.capture()
    # The destination keeps the bases it fetched: a cache, not a leak.
    assert after['hosts']['host1'] == before['hosts']['host1']
    assert state.leaks() == []


def test_migrate_keeps_the_flavor(icloud):
    vm = _server(icloud, power_on=False)
    api.migrate(icloud.ctx, vm['uuid'], wait=True)
    assert _sizes('host2', vm['uuid']) == (1 * GiB, 1 * GiB, 16 * MiB)
    assert _has_data('host2', vm['uuid'])
    assert state.leaks() == []


def test_a_crash_inside_copy_disk_is_resumed(icloud, monkeypatch):
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK', 64 * KiB)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', 64 * KiB)
    real = sparsecopy.sparse_copy

    def cut(src, dst, host, owner=None, progress=None, **kwargs):
        def report(fraction):
            if cut.armed and dst.endswith('/disk.local') and \
                    0 < fraction < 1:
                cut.armed = False
                raise faults.SimulatedCrash('crash inside disk.local')
            if progress is not None:
                progress(fraction)
        return real(src, dst, host, owner, progress=report, **kwargs)
    cut.armed = True
    monkeypatch.setattr(sparsecopy, 'sparse_copy', cut)
    vm = _server(icloud)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(icloud.ctx, vm['uuid'], 'fuller', wait=True)
    flow_id = repository.migration_list(vm['uuid'])[-1]['flow_id']
    assert api.resume_flow(icloud.ctx, flow_id)['flow_state'] == \
        tf_states.SUCCESS
    assert _has_data('host2', vm['uuid'])
    assert state.leaks() == []


@pytest.mark.parametrize('when', [faults.BEFORE_EXECUTE,
                                  faults.AFTER_EXECUTE])
@pytest.mark.parametrize('task', ['MoveSourceToResize', 'CopyDisk',
                                  'FinishMigration'])
def test_a_fault_in_a_resize_leaves_the_cloud_as_it_was(icloud, task,
                                                        when):
    vm = _server(icloud)
    before = state.capture()
    faults.inject(task, when)
    with pytest.raises(faults.InjectedFault):
        api.resize(icloud.ctx, vm['uuid'], 'fuller', wait=True)
    faults.clear()
    after = state.capture()
    # The destination may keep bases it fetched (a cache).
    for host in after['hosts'].values():
        host.pop('base', None)
    for host in before['hosts'].values():
        host.pop('base', None)
    assert after == before
    assert _has_data('host1', vm['uuid'])
    assert state.leaks() == []
    api.resize(icloud.ctx, vm['uuid'], 'fuller', wait=True)
    assert _has_data('host2', vm['uuid'])


def _openers(path):
    """How many descriptors of this process lead to ``path``."""
    found = 0
    for fd in os.listdir('/proc/self/fd'):
        try:
            found += os.readlink('/proc/self/fd/' + fd) == path
        except OSError:
            continue
    return found


def test_waiting_for_another_fetch_is_not_a_stalled_copy(icloud, conf):
    """The destination's base is being fetched by another process (its
    lock held, and its fetch moving: it beats): the move waits for it
    longer than copy_stall_timeout without failing CopyDisk, since no
    copy of its own stalled. (A holder that stops beating is passed by:
    tests/unit/virt/test_imagecache.py.)"""
    conf.set_override('copy_stall_timeout', 2, group='flows')
    vm = _server(icloud, power_on=False)
    dest = _driver('host2').files
    imagecache._ensure_base_dir(dest)
    lock = imagecache._lock_path(
        dest, layout.image_base_name(icloud.image['sha256']))
    with dest.fetch_lock(lock, 0, stale=2) as held:
        assert held
        op = api.migrate(icloud.ctx, vm['uuid'])
        while _openers(lock) < 2:           # the move waits for it
            if op.done():
                op.wait()                   # its error, if it failed
            assert not op.done()
            held.beat()
            time.sleep(0.05)
        end = time.monotonic() + 6          # three stall timeouts
        while time.monotonic() < end:
            held.beat()
            time.sleep(0.05)
        assert not op.done()
    assert op.wait(600)['flow_state'] == tf_states.SUCCESS
    assert _has_data('host2', vm['uuid'])
    assert state.leaks() == []
    conf.clear_override('copy_stall_timeout', group='flows')
