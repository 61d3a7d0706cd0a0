"""qcow2 disks of instances: qemu-img, sparse copies, ownership, atomic files.

Every function takes a path and a host name (for the error message) and
raises :class:`resize_flows.exception.DiskError` when qemu-img or the file
system fails. Files that are created here get their final name only when
they are complete (``<name>.part`` then rename), so a crash never leaves a
half-written file under the name a later step trusts.
"""
import errno
import json
import os
import subprocess

from resize_flows import exception

GiB = 1024 ** 3
PART_SUFFIX = '.part'
_COPY_CHUNK = 8 * 1024 * 1024


def _run(host, *args):
    try:
        proc = subprocess.run(args, capture_output=True, text=True,
                              check=False)
    except OSError as exc:
        raise exception.DiskError(host=host, reason='%s: %s' % (args[0], exc))
    if proc.returncode != 0:
        raise exception.DiskError(
            host=host, reason='%s failed (%d): %s' % (
                ' '.join(args), proc.returncode,
                (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def info(path, host):
    """``qemu-img info`` of ``path`` as a dict, or None if there is no file.
    Works on disks a running guest holds open (``-U``)."""
    if not os.path.exists(path):
        return None
    out = _run(host, 'qemu-img', 'info', '--output=json', '-U', path)
    return json.loads(out)


def snapshot_names(path, host):
    data = info(path, host)
    if data is None:
        raise exception.DiskError(host=host, reason='no disk at %s' % path)
    return tuple(snap['name'] for snap in data.get('snapshots', ()))


def create(path, size_bytes, host, owner=None):
    """Create a blank qcow2 disk of ``size_bytes`` at ``path``, atomically."""
    part = path + PART_SUFFIX
    _unlink_quietly(part)
    _run(host, 'qemu-img', 'create', '-q', '-f', 'qcow2', part,
         str(size_bytes))
    chown(part, owner)
    _fsync_path(part)
    os.rename(part, path)
    fsync_dir(os.path.dirname(path))


def resize(path, size_bytes, host):
    """Grow the virtual size of the qcow2 disk at ``path``."""
    _run(host, 'qemu-img', 'resize', '-q', '-f', 'qcow2', path,
         str(size_bytes))


def snapshot_create(path, name, host):
    _run(host, 'qemu-img', 'snapshot', '-c', name, path)


def snapshot_apply(path, name, host):
    _run(host, 'qemu-img', 'snapshot', '-a', name, path)


def snapshot_delete(path, name, host):
    _run(host, 'qemu-img', 'snapshot', '-d', name, path)


def sparse_copy(src, dst, host, owner=None):
    """Copy ``src`` to ``dst`` skipping holes: the data extents are copied
    (SEEK_DATA / SEEK_HOLE), the rest stays unallocated. The copy is written
    to ``dst.part``, fsynced, then renamed to ``dst``."""
    part = dst + PART_SUFFIX
    try:
        with open(src, 'rb') as fsrc:
            size = os.fstat(fsrc.fileno()).st_size
            with open(part, 'wb') as fdst:
                chown(part, owner)
                for start, end in _data_extents(fsrc.fileno(), size):
                    _copy_range(fsrc.fileno(), fdst.fileno(), start, end)
                fdst.truncate(size)
                fdst.flush()
                os.fsync(fdst.fileno())
        os.rename(part, dst)
        fsync_dir(os.path.dirname(dst))
    except OSError as exc:
        _unlink_quietly(part)
        raise exception.DiskError(
            host=host, reason='copy %s -> %s: %s' % (src, dst, exc))


def _data_extents(fd, size):
    """Yield (start, end) of each data extent of an open file."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:      # only a hole is left
                return
            if exc.errno == errno.EINVAL:     # no SEEK_DATA: copy it all
                yield pos, size
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def _copy_range(fd_in, fd_out, start, end):
    offset = start
    while offset < end:
        count = min(_COPY_CHUNK, end - offset)
        try:
            done = os.copy_file_range(fd_in, fd_out, count, offset, offset)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL,
                                 errno.EOPNOTSUPP):
                raise
            data = os.pread(fd_in, count, offset)
            done = os.pwrite(fd_out, data, offset)
        if done == 0:
            raise OSError(errno.EIO, 'short copy at offset %d' % offset)
        offset += done


def write_file_atomic(path, text, owner=None):
    """Write ``text`` to ``path`` through ``path.part`` and a rename."""
    part = path + PART_SUFFIX
    with open(part, 'w') as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    chown(part, owner)
    os.rename(part, path)
    fsync_dir(os.path.dirname(path))


def owner_of(path):
    """(uid, gid) that files created under ``path`` should get, or None
    when this process is not root (its files are its own then)."""
    if os.geteuid() != 0:
        return None
    st = os.stat(path)
    return st.st_uid, st.st_gid


def chown(path, owner):
    if owner is not None:
        os.chown(path, owner[0], owner[1])


def makedir(path, owner=None, mode=0o755):
    """Create directory ``path`` (parent must exist); fine if it is there."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    chown(path, owner)
    fsync_dir(os.path.dirname(path))


def fsync_dir(path):
    fd = os.open(path or '.', os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
