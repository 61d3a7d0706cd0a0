"""qcow2 disks of instances: qemu-img, ownership, atomic files.

Every function takes a path and a host name (for the error message) and
raises :class:`resize_flows.exception.DiskError` when qemu-img or the file
system fails. Files that are created here get their final name only when
they are complete (``<name>.part`` then rename), so a crash never leaves a
half-written file under the name a later step trusts.
:func:`write_file_atomic` follows no link and writes no file it did not
make, with the helpers here that tell a file of ours (:func:`ours`,
:func:`lstat_at`, :func:`kind`, :func:`refused`); the resumable copy of a
disk is :mod:`.sparsecopy`, the other operations on an instances path are
in :mod:`.guarded`.
"""
import json
import os
import stat
import subprocess

from resize_flows import exception

MiB = 1024 ** 2
GiB = 1024 ** 3
PART_SUFFIX = '.part'


def run(host, *args, pass_fds=()):
    try:
        proc = subprocess.run(args, capture_output=True, text=True,
                              check=False, pass_fds=pass_fds)
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
    out = run(host, 'qemu-img', 'info', '--output=json', '-U', path)
    return json.loads(out)


def create(path, size_bytes, host):
    """Create a blank qcow2 disk of ``size_bytes`` at ``path``, atomically
    (by name: for paths of our own, as benchmarks and tests use; an
    instances path is :mod:`.guarded`'s)."""
    part = path + PART_SUFFIX
    _unlink_quietly(part)
    run(host, 'qemu-img', 'create', '-q', '-f', 'qcow2', part,
        str(size_bytes))
    _fsync_path(part)
    os.rename(part, path)
    fsync_dir(os.path.dirname(path))


def snapshot_create(path, name, host):
    run(host, 'qemu-img', 'snapshot', '-c', name, path)


def refused(host, path, why):
    """The DiskError of a file found where resize-flows will not work."""
    return exception.DiskError(
        host=host, reason='refused: %s %s; resize-flows follows no link '
        'and trusts no file it did not make in an instances path (nothing '
        'was changed)' % (path, why))


def lstat_at(name, dir_fd):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def ours(st):
    """A regular file of this euid with no other link: made here."""
    return (stat.S_ISREG(st.st_mode) and st.st_nlink == 1
            and st.st_uid == os.geteuid())


def kind(st):
    if st is None:
        return 'gone'
    if stat.S_ISLNK(st.st_mode):
        return 'a symbolic link'
    if stat.S_ISDIR(st.st_mode):
        return 'a directory'
    if stat.S_ISREG(st.st_mode):
        return ('a file with %d hard links' % st.st_nlink
                if st.st_nlink != 1 else 'a file')
    return 'not a regular file'


def write_file_atomic(path, text, owner=None):
    """Write ``text`` to ``path`` through ``path.part`` and a rename. The
    part is made here (O_EXCL, 0600; a left-over of ours is replaced,
    anything else refused) and given to ``owner`` through its descriptor,
    so a link planted at either name is never followed."""
    folder, name = os.path.split(os.path.abspath(path))
    part = name + PART_SUFFIX
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = lstat_at(part, dir_fd)
        if st is not None:
            if not ours(st):
                raise refused('here', path + PART_SUFFIX, 'is %s of uid %d'
                              % (kind(st), st.st_uid))
            os.unlink(part, dir_fd=dir_fd)
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                     | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        try:
            write_all(fd, text.encode())
            os.fsync(fd)
            if owner is not None:
                os.fchown(fd, owner[0], owner[1])
        finally:
            os.close(fd)
        os.rename(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
