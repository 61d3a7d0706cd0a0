"""testing.state sees every file of an instance directory and each host's
image cache: a disk whose backing file is missing is a leak, and so is a
snapshot left on disk.local; an unused cached base is not."""
import os
import subprocess

from resize_flows import api
from resize_flows import imagestore
from resize_flows.persistence import repository
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import layout


def _image(cloud, tmp_path, name='img'):
    raw = tmp_path / (name + '.raw')
    raw.write_bytes(os.urandom(1 << 20))
    image = api.create_image(cloud.ctx, name, str(raw), disk_format='raw')
    store = imagestore.get_store()
    return image['sha256'], (host_files.for_host('image-store', store.root),
                             store.path(image['uuid']))


def _host_files(name):
    return virt.get_driver(repository.host_get(name)).files


def _ephemeral_on(files, folder, base):
    path = os.path.join(folder, layout.EPHEMERAL)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base,
                    '-F', 'raw', path], check=True)
    files.adopt(path)
    return path


def test_capture_records_every_file_and_the_cache(cloud, tmp_path):
    vm = cloud.server()
    sha, source = _image(cloud, tmp_path)
    h1 = _host_files('host1')
    base, _ = imagecache.ensure_image_base(h1, sha, [source])
    imagecache.ensure_image_base(_host_files('host2'), sha, [source])
    folder = os.path.join(h1.instances_path, vm['uuid'])
    _ephemeral_on(h1, folder, base)
    snap = state.capture()
    host1 = snap['hosts']['host1']
    assert host1['base'] == {sha: 1 << 20}
    assert '_base' not in host1['dirs']
    got = host1['files'][vm['uuid']]
    assert got[layout.EPHEMERAL] == {
        'virtual_size': 1 << 20, 'snapshots': [], 'backing': sha}
    assert got[layout.DISK]['backing'] is None
    assert all('size' in facts for name, facts in got.items()
               if name not in layout.VIRTIO_DISKS)
    # host2's base is used by nothing: a cache, not a leak.
    assert snap['hosts']['host2']['base'] == {sha: 1 << 20}
    assert state.leaks() == []


def test_a_missing_backing_file_and_an_ephemeral_snapshot_are_leaks(
        cloud, tmp_path):
    vm = cloud.server()
    sha, source = _image(cloud, tmp_path)
    h1 = _host_files('host1')
    base, _ = imagecache.ensure_image_base(h1, sha, [source])
    path = _ephemeral_on(h1, os.path.join(h1.instances_path, vm['uuid']),
                         base)
    h1.qemu_img('snapshot', '-c', 'left', path)
    h1.remove_file(base)
    assert sorted(state.leaks()) == sorted([
        'disk %s of %s on host1 has no backing file: _base/%s is missing'
        % (layout.EPHEMERAL, vm['uuid'], sha),
        '%s of %s on host1 keeps snapshots %s' % (
            layout.EPHEMERAL, vm['uuid'], ['left'])])
