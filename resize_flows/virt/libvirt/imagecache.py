"""STAND-IN for the image cache (another branch): deleted on merge."""
import hashlib
import os
import posixpath

from resize_flows import exception
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import transfer


def base_path(files, name):
    return posixpath.join(files.instances_path, layout.BASE_DIR, name)


def ensure_image_base(files, sha256, sources, progress=None):
    path = base_path(files, layout.image_base_name(sha256))
    if files.exists(path):
        return path, 0
    files.makedir(posixpath.dirname(path))
    for src_files, src_path in sources:
        size = src_files.getsize(src_path)
        if size is None:
            continue
        transfer.copy_disk(src_files, src_path, files, path,
                           progress=progress)
        return path, size
    raise exception.DiskError(host=files.host, reason='no base %s' % sha256)


def ensure_blank_base(files, kind, size):
    name = (layout.ephemeral_base_name(size) if kind == 'ephemeral'
            else layout.swap_base_name(size))
    path = base_path(files, name)
    files.makedir(posixpath.dirname(path))
    if not files.exists(path):
        unit = 1024 ** 3 if kind == 'ephemeral' else 1024 ** 2
        seed = hashlib.sha256(name.encode()).digest()
        with files.area.parent(path) as (dfd, leaf):
            fd = files.area.create(dfd, leaf + '.tmp', path + '.tmp')
            os.write(fd, seed)
            os.ftruncate(fd, size * unit)
            files.area.give(fd)
            os.close(fd)
            os.rename(leaf + '.tmp', leaf, src_dir_fd=dfd, dst_dir_fd=dfd)
    return path
