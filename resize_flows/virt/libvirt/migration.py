"""Moving an instance directory: the copy of a move, and the disk steps
of stash, finish and revert.

:func:`copy_instance_dir` carries the stashed ``<uuid>_resize/`` of the
source host whole into ``<uuid>/`` of the destination (another host or
the same one): every file of :data:`.layout.MOVED` present, each with the
resumable copy of :func:`.transfer.copy_disk` (the sparse copy on one
machine, rsync between machines), under one progress by bytes. Before an
overlay is copied its backing file is made sure of in the destination's
cache (:mod:`.imagecache`): an image's base from the source's cache or
else the image store, a blank base made there; the copied overlay's
backing path is then rewritten for its new place (``qemu-img rebase
-u``) when it differs, and ``disk.info`` written for the destination.

A copy cut off by a crash is resumed per file: a file under its final
name is complete (both copies give it its name last), one that was being
copied continues from what its partial copy holds.
"""
import posixpath
import re

from resize_flows import exception
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import instancedir
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import transfer

_BLANK = re.compile(r'^(ephemeral)_([0-9]+)_ext4$|^(swap)_([0-9]+)$')


class _Progress:
    """One fraction for a step made of parts weighed by bytes."""

    def __init__(self, callback, total):
        self.callback = callback
        self.total = max(total, 1)
        self.done = 0
        self.shown = 0.0

    def part(self, weight):
        """The callback of a part of ``weight`` bytes; call
        :meth:`finish` with the same weight once it is done."""
        if self.callback is None:
            return None

        def report(fraction):
            self._show((self.done + fraction * weight) / self.total)
        return report

    def finish(self, weight):
        self.done += weight
        self._show(self.done / self.total)

    def _show(self, fraction):
        # The same fraction again is passed on too: a copy's tick while
        # no byte moves (its caller's chance to stop it).
        fraction = min(fraction, 1.0)
        if self.callback is not None and fraction >= self.shown:
            self.shown = fraction
            self.callback(fraction)


def backing_of(files, path):
    """(name in _base, format) of the backing file of the disk ``path``,
    or None for a disk standing alone. A backing file anywhere but this
    host's ``_base`` is refused."""
    info = files.disk_info(path)
    if info is None:
        raise exception.DiskError(host=files.host,
                                  reason='no disk at %s' % path)
    backing = info.get('backing-filename')
    if not backing:
        return None
    name = posixpath.basename(backing)
    folder = posixpath.join(files.instances_path, layout.BASE_DIR)
    if posixpath.dirname(backing) != folder or not layout.is_base_name(
            name):
        raise disk.refused(files.host, path, 'has the backing file %s, '
                           'not one of %s' % (backing, folder))
    return name, info.get('backing-filename-format') or 'raw'


def _ensure_base(src, dest, name, image, progress):
    """The base ``name`` on the destination: (its path, bytes copied)."""
    blank = _BLANK.match(name)
    if blank:
        kind = blank.group(1) or blank.group(3)
        size = int(blank.group(2) or blank.group(4))
        return imagecache.ensure_blank_base(dest.files, kind, size), 0
    sources = [(src.files, imagecache.base_path(src.files, name))]
    if image is not None and image.get('sha256') == name:
        sources.append((instancedir.store_files(image), image['path']))
    return imagecache.ensure_image_base(dest.files, name, sources,
                                        progress=progress)


def _base_weight(src, dest, name, image):
    """Bytes the base ``name`` may cost to bring to the destination."""
    if _BLANK.match(name) or dest.files.exists(
            imagecache.base_path(dest.files, name)):
        return 0
    size = src.files.getsize(imagecache.base_path(src.files, name))
    if size is None and image is not None and image.get('sha256') == name:
        size = instancedir.store_files(image).getsize(image['path'])
    return size or 0


def copy_instance_dir(src, dest, instance_uuid, progress=None, image=None):
    """Copy ``<uuid>_resize/`` of the driver ``src`` into ``<uuid>/`` of
    the driver ``dest`` (see the module). ``image`` (as
    ``imagestore.for_driver`` gives it, or None) names the store file an
    image base can come from when the source's cache lacks it. Returns
    the bytes of bases copied."""
    src_dir = src.instance_dir(instance_uuid, virt_driver.RESIZE_SUFFIX)
    names = [n for n in instancedir.present(src.files, src_dir)
             if n != layout.DISK_INFO]
    if layout.DISK not in names:
        raise exception.DiskError(
            host=src.host, reason='no stashed disk %s to copy'
            % posixpath.join(src_dir, layout.DISK))
    if not dest.files.has_root():
        raise exception.HypervisorUnavailable(
            host=dest.host, reason='instances path %s does not exist'
            % dest.instances_path)
    dest_dir = dest.instance_dir(instance_uuid)
    dest.files.makedir(dest_dir)
    sizes = {n: src.files.getsize(posixpath.join(src_dir, n))
             for n in names}
    backings = {n: backing_of(src.files, posixpath.join(src_dir, n))
                for n in layout.VIRTIO_DISKS if n in names}
    bases = sorted({b[0] for b in backings.values() if b})
    weights = {b: _base_weight(src, dest, b, image) for b in bases}
    meter = _Progress(progress, sum(sizes.values()) + sum(weights.values()))
    base_paths, copied = {}, 0
    for name in bases:
        base_paths[name], nbytes = _ensure_base(
            src, dest, name, image, meter.part(weights[name]))
        copied += nbytes
        meter.finish(weights[name])
    for name in names:
        _copy_file(src, posixpath.join(src_dir, name), dest,
                   posixpath.join(dest_dir, name), sizes[name],
                   meter.part(sizes[name]))
        meter.finish(sizes[name])
    for name, backing in backings.items():
        if backing is not None:
            rebase(dest.files, posixpath.join(dest_dir, name),
                   base_paths[backing[0]], backing[1])
    instancedir.write_disk_info(dest.files, dest_dir)
    return copied


def _copy_file(src, src_path, dest, dst_path, size, progress):
    """One file, resumably; one of the source's size under the final
    name is a copy finished before a crash."""
    if dest.files.getsize(dst_path) == size:
        dest.files.remove_copy_sidecar(dst_path)
        dest.files.adopt(dst_path)
        return
    transfer.copy_disk(src.files, src_path, dest.files, dst_path,
                       progress=progress, total=size)


def rebase(files, path, base, base_format):
    """Point the overlay ``path`` at ``base`` (no data is touched)."""
    info = files.disk_info(path)
    if info.get('backing-filename') != base:
        files.qemu_img('rebase', '-u', '-f', 'qcow2', '-F', base_format,
                       '-b', base, path)


# -- snapshots, finish, revert --------------------------------------------

def snapshotted(files, folder):
    """Paths of the disks of ``folder`` a resize snapshot is taken of."""
    entries = set(files.listdir(folder))
    return [posixpath.join(folder, n) for n in layout.SNAPSHOTTED
            if n in entries]


def snapshot_names(files, path):
    info = files.disk_info(path)
    if info is None:
        raise exception.DiskError(host=files.host,
                                  reason='no disk at %s' % path)
    return tuple(s['name'] for s in info.get('snapshots', ()))


def has_snapshots(files, folder, snapshot_name):
    """For each disk of ``folder`` a resize snapshot is taken of, whether
    it holds ``snapshot_name``."""
    return [snapshot_name in snapshot_names(files, path)
            for path in snapshotted(files, folder)]


def take_snapshots(files, folder, snapshot_name):
    """The snapshot ``snapshot_name`` of every disk of :data:`.layout.
    SNAPSHOTTED` in ``folder`` (taken already: left as it is)."""
    for path in snapshotted(files, folder):
        if snapshot_name not in snapshot_names(files, path):
            files.qemu_img('snapshot', '-c', snapshot_name, path)


def drop_snapshots(files, folder, snapshot_name, roll_back=False):
    """Delete ``snapshot_name`` from the disks of ``folder``, rolling
    each back to it first with ``roll_back``."""
    for path in snapshotted(files, folder):
        if snapshot_name in snapshot_names(files, path):
            if roll_back:
                files.qemu_img('snapshot', '-a', snapshot_name, path)
            files.qemu_img('snapshot', '-d', snapshot_name, path)


def finish_disks(files, folder, flavor, snapshot_name, instance_uuid):
    """The destination's disks for ``flavor``: the snapshot dropped,
    ``disk`` grown to root_gb and ``disk.local`` to ephemeral_gb (made
    if the old flavor had none; never shrunk), ``disk.swap`` made again
    when its size changes (removed for 0), ``disk.info`` written."""
    root = posixpath.join(folder, layout.DISK)
    if files.disk_info(root) is None:
        raise exception.DiskError(
            host=files.host, reason='no disk at %s to finish the '
            'migration with' % root)
    drop_snapshots(files, folder, snapshot_name)
    _grow(files, root, int(flavor['root_gb']) * disk.GiB)
    ephemeral_gb = int(flavor.get('ephemeral_gb') or 0)
    local = posixpath.join(folder, layout.EPHEMERAL)
    if files.disk_info(local) is not None:
        _grow(files, local, ephemeral_gb * disk.GiB)
    else:
        instancedir.ensure_ephemeral(files, folder, ephemeral_gb,
                                     instance_uuid)
    swap_mb = int(flavor.get('swap_mb') or 0)
    swap = posixpath.join(folder, layout.SWAP)
    info = files.disk_info(swap)
    if info is not None and info['virtual-size'] != swap_mb * disk.MiB:
        files.remove_file(swap)
    instancedir.ensure_swap(files, folder, swap_mb, instance_uuid)
    instancedir.write_disk_info(files, folder)


def _grow(files, path, size):
    if files.disk_info(path)['virtual-size'] < size:
        files.qemu_img('resize', '-q', '-f', 'qcow2', path, str(size))
