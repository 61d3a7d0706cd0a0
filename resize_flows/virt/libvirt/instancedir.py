"""Building an instance directory as Nova's libvirt driver lays it out.

:func:`build` makes, in ``<uuid>/`` of a host's files (:mod:`.files`),
what :mod:`.layout` names: the root ``disk`` (a qcow2 overlay on the
image's base in the host's cache, or a blank qcow2), ``disk.local`` and
``disk.swap`` (overlays on blank bases), the config drive, ``kernel`` and
``ramdisk`` (the image's, checksums checked) and ``disk.info``. Every
file is created by the guarded primitives of the files object: ours while
written, the owner's under its final name. Building again after a crash
finishes what is missing; a disk of another size or backing file is
``InstanceExistsOnHost``. ``console.log`` is QEMU's to create.
"""
import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile

from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import layout

#: The host name given to the files of the image store.
STORE_HOST = 'image-store'


def store_files(image):
    """The files object of the image store holding ``image['path']``."""
    return host_files.for_host(STORE_HOST,
                               os.path.dirname(image['path']))


def present(files, dirpath):
    """The names of :data:`.layout.MOVED` that ``dirpath`` holds."""
    entries = set(files.listdir(dirpath))
    return tuple(name for name in layout.MOVED if name in entries)


def disk_format(name):
    """The format of a disk of the instance directory, as disk.info says."""
    return 'raw' if name == layout.CONFIG_DRIVE else 'qcow2'


def write_disk_info(files, dirpath):
    """Write Nova's ``disk.info``: ``{path: format}`` of each disk there."""
    names = present(files, dirpath)
    info = {posixpath.join(dirpath, name): disk_format(name)
            for name in layout.VIRTIO_DISKS + (layout.CONFIG_DRIVE,)
            if name in names}
    files.write_atomic(posixpath.join(dirpath, layout.DISK_INFO),
                       json.dumps(info, sort_keys=True))


def ensure_disk(files, path, size, backing=None, backing_format=None,
                instance_uuid=None):
    """``path`` as a qcow2 of ``size`` bytes (an overlay on ``backing``):
    created if missing; one of another size or backing file is refused."""
    info = files.disk_info(path)
    if info is None:
        files.create_disk(path, size, backing, backing_format)
        return True
    if (info.get('virtual-size') != size
            or info.get('backing-filename') != backing):
        raise exception.InstanceExistsOnHost(
            instance_uuid=instance_uuid, host=files.host)
    return False


def build(files, dirpath, instance, flavor, image=None, config_drive=False):
    """Lay out ``dirpath`` (which exists) for ``instance`` of ``flavor``
    from ``image`` (None: a blank root disk), with a config drive if
    ``config_drive``. Returns the names present (:func:`present`)."""
    uuid = instance['uuid']
    root = int(flavor['root_gb']) * disk.GiB
    path = posixpath.join(dirpath, layout.DISK)
    if image is None:
        ensure_disk(files, path, root, instance_uuid=uuid)
    else:
        if int(image['virtual_size']) > root:
            raise exception.FlavorDiskSmallerThanImage(
                flavor=flavor.get('name'), image=image['uuid'],
                flavor_size=root, image_size=int(image['virtual_size']))
        base, _copied = imagecache.ensure_image_base(
            files, image['sha256'], [(store_files(image), image['path'])])
        ensure_disk(files, path, root, base, image['disk_format'], uuid)
    ensure_ephemeral(files, dirpath, flavor.get('ephemeral_gb') or 0, uuid)
    ensure_swap(files, dirpath, flavor.get('swap_mb') or 0, uuid)
    if config_drive:
        config_path = posixpath.join(dirpath, layout.CONFIG_DRIVE)
        if not files.exists(config_path):
            files.write_atomic(config_path, config_drive_iso(instance))
    if image is not None:
        for name, key in ((layout.KERNEL, 'kernel'),
                          (layout.RAMDISK, 'ramdisk')):
            target = posixpath.join(dirpath, name)
            if image.get(key + '_path') and not files.exists(target):
                files.write_atomic(target, _checked_bytes(
                    image[key + '_path'], image[key + '_sha256'],
                    files.host))
    write_disk_info(files, dirpath)
    return present(files, dirpath)


def ensure_ephemeral(files, dirpath, size_gb, instance_uuid=None):
    """``disk.local``, an overlay of ``size_gb`` GiB on the blank ext4
    base of that size (nothing for 0)."""
    if size_gb:
        base = imagecache.ensure_blank_base(files, 'ephemeral', size_gb)
        ensure_disk(files, posixpath.join(dirpath, layout.EPHEMERAL),
                    int(size_gb) * disk.GiB, base, 'raw', instance_uuid)


def ensure_swap(files, dirpath, size_mb, instance_uuid=None):
    """``disk.swap``, an overlay of ``size_mb`` MiB on the blank swap base
    of that size (nothing for 0)."""
    if size_mb:
        base = imagecache.ensure_blank_base(files, 'swap', size_mb)
        ensure_disk(files, posixpath.join(dirpath, layout.SWAP),
                    int(size_mb) * disk.MiB, base, 'raw', instance_uuid)


def hostname(name, instance_uuid):
    """A DNS label for the instance, from its name (as Nova makes one)."""
    label = re.sub(r'[^a-z0-9-]+', '-', (name or '').lower()).strip('-')
    return label[:63].strip('-') or 'server-%s' % instance_uuid


def config_drive_iso(instance):
    """The bytes of the instance's config drive: :func:`iso_with_meta_data`
    of its uuid, name and hostname."""
    return iso_with_meta_data({
        'uuid': instance['uuid'], 'name': instance.get('name'),
        'hostname': hostname(instance.get('name'), instance['uuid'])})


def iso_with_meta_data(meta):
    """The bytes of a config drive (ISO 9660 labelled ``config-2``) with
    ``meta`` (a dict) as ``openstack/latest/meta_data.json``, built in a
    temporary directory of ours."""
    tool = shutil.which('genisoimage')
    if tool is None:
        raise exception.DiskError(
            host='here', reason='genisoimage is not installed: cannot '
            'build a config drive')
    with tempfile.TemporaryDirectory(prefix='rf-configdrive-') as tmp:
        tree = os.path.join(tmp, 'root', 'openstack', 'latest')
        os.makedirs(tree)
        with open(os.path.join(tree, 'meta_data.json'), 'w') as handle:
            json.dump(meta, handle, sort_keys=True)
        iso = os.path.join(tmp, 'config.iso')
        disk.run('here', tool, '-quiet', '-o', iso, '-V',
                 layout.CONFIG_DRIVE_LABEL, '-r', '-J',
                 os.path.join(tmp, 'root'))
        with open(iso, 'rb') as handle:
            return handle.read()


def _checked_bytes(path, sha256, host):
    """The content of the store's file ``path`` if its sha256 is
    ``sha256``."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, 'rb') as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise exception.DiskError(
            host=host, reason='%s does not have the checksum its image '
            'records (%s)' % (path, sha256))
    return data
