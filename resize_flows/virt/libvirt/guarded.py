"""The files of an instances path on this machine, touched safely as root.

An instances path and the directories in it belong to the session user,
the uid the guests' QEMU runs as: anything in them may have been put
there by a compromised guest. This process runs as root, so it never
works there by path name, which a planted link would redirect:

* a path is walked from the instances path one name at a time
  (``openat`` with ``O_NOFOLLOW``), and every directory on the way must
  belong to the owner of the instances path or to us;
* a file read, resumed or given away must be a regular file with no
  other link, owned by the instances path's owner or by us (a hard link
  to one of root's files is neither);
* a file is created with ``O_EXCL`` and belongs to us until it is
  complete; then, through its descriptor, it gets the owner of the
  instances path and mode 0600, and its final name (``renameat``, which
  replaces a link planted there rather than write through it);
* a name we are about to create may only hold our own left-over (a
  regular file of ours, one link): anything else is refused;
* directories are created 0700 and removed with :func:`shutil.rmtree`'s
  descriptor-based walk, which follows no link;
* qemu-img runs as the owner of the instances path, so it can reach
  nothing that user could not.

What is refused raises :class:`~resize_flows.exception.DiskError` whose
reason starts with ``refused:`` and leaves what was found untouched.
"""
import contextlib
import errno
import os
import shutil
import stat
import subprocess

from resize_flows import exception
from resize_flows.virt.libvirt import disk

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Mode of what is created in an instances path: root and its owner only.
FILE_MODE = 0o600
DIR_MODE = 0o700


class Area:
    """The instances path ``root`` of ``host`` on this machine."""

    def __init__(self, root, host):
        self.root = os.path.abspath(root)
        self.host = host

    # -- who is trusted ---------------------------------------------------
    def owner(self):
        """(uid, gid) that files created here get, or None when this
        process is not root (its files are its own then)."""
        if os.geteuid() != 0:
            return None
        st = os.stat(self.root)
        return st.st_uid, st.st_gid

    def _trusted(self, uid):
        owner = self.owner()
        return uid == os.geteuid() or (owner is not None and uid == owner[0])

    def refused(self, path, why):
        return disk.refused(self.host, path, why)

    def failed(self, path, exc):
        return exception.DiskError(host=self.host, reason='%s: %s' % (
            path, exc.strerror or exc))

    # -- walking ----------------------------------------------------------
    def _parts(self, path):
        path = os.path.abspath(path)
        if path == self.root:
            return []
        rel = os.path.relpath(path, self.root)
        if rel.startswith(os.pardir) or os.path.isabs(rel):
            raise exception.DiskError(
                host=self.host, reason='%s is not in the instances path %s'
                % (path, self.root))
        return rel.split(os.sep)

    @contextlib.contextmanager
    def directory(self, path):
        """A descriptor of the directory ``path`` (the instances path or
        below it), walked without following a link. FileNotFoundError if
        it is not there."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            walked = self.root
            for name in self._parts(path):
                walked = os.path.join(walked, name)
                try:
                    sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if isinstance(exc, FileNotFoundError):
                        raise
                    st = _lstat(name, fd)
                    raise self.refused(walked, 'is %s, not a directory'
                                       % _kind(st)) from None
                os.close(fd)
                fd = sub
                st = os.fstat(fd)
                if not self._trusted(st.st_uid):
                    raise self.refused(walked, 'is a directory of uid %d'
                                       % st.st_uid)
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def parent(self, path):
        """(descriptor of the directory of ``path``, its last name)."""
        folder, name = os.path.split(os.path.abspath(path))
        with self.directory(folder) as fd:
            yield fd, name

    def lstat(self, path):
        """lstat of ``path`` (no link followed), or None."""
        try:
            with self.parent(path) as (fd, name):
                return _lstat(name, fd)
        except FileNotFoundError:
            return None

    def check_file(self, path, st=None):
        """Refuse ``path`` unless it is a regular file with one link,
        of the instances path's owner or of ours; its stat."""
        st = st or self.lstat(path)
        if st is None:
            raise exception.DiskError(host=self.host,
                                      reason='no file %s' % path)
        if not stat.S_ISREG(st.st_mode):
            raise self.refused(path, 'is %s' % _kind(st))
        if st.st_nlink != 1:
            raise self.refused(path, 'has %d hard links' % st.st_nlink)
        if not self._trusted(st.st_uid):
            raise self.refused(path, 'belongs to uid %d' % st.st_uid)
        return st

    @contextlib.contextmanager
    def open_file(self, path, flags=os.O_RDONLY):
        """A descriptor of the existing file ``path``, checked as
        :meth:`check_file` says (on what was opened, not on the name)."""
        with self.parent(path) as (dfd, name):
            try:
                fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NOCTTY
                             | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
            except FileNotFoundError:
                raise
            except OSError as exc:
                st = _lstat(name, dfd)
                if st is not None and not stat.S_ISREG(st.st_mode):
                    raise self.refused(path, 'is %s' % _kind(st)) from None
                raise self.failed(path, exc) from None
            try:
                self.check_file(path, os.fstat(fd))
                os.set_blocking(fd, True)
                yield fd
            finally:
                os.close(fd)

    def clear_for_new(self, dfd, name, path):
        """Make room for a file we create as ``name``: only a left-over
        of ours (a regular file of this euid, one link) is removed."""
        st = _lstat(name, dfd)
        if st is None:
            return
        if (not stat.S_ISREG(st.st_mode) or st.st_nlink != 1
                or st.st_uid != os.geteuid()):
            raise self.refused(path, 'is there already (%s of uid %d) and '
                               'was not left by resize-flows'
                               % (_kind(st), st.st_uid))
        os.unlink(name, dir_fd=dfd)

    def create(self, dfd, name, path):
        """A new file ``name`` of ours in ``dfd`` (0600, O_EXCL)."""
        self.clear_for_new(dfd, name, path)
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL
                       | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE,
                       dir_fd=dfd)

    def give(self, fd):
        """Give the open file ``fd`` to the owner, mode 0600."""
        owner = self.owner()
        if owner is not None:
            os.fchown(fd, owner[0], owner[1])
        os.fchmod(fd, FILE_MODE)

    def create_new(self, path, fill):
        """Make the new file ``path``: a file of ours under the
        temporary name ``<path>.part`` (a left-over of ours there is
        removed, anything else refused), ``fill(fd)`` writes it through
        that descriptor (e.g. qemu-img on ``/dev/fd/N``: it opens no
        name), it is given to the owner (0600), synced, and renamed to
        ``path``, refused if something is there already; then the
        directory is synced. On failure the temporary file goes."""
        part = path + disk.PART_SUFFIX
        with self.parent(path) as (dfd, name):
            fd = self.create(dfd, name + disk.PART_SUFFIX, part)
            try:
                fill(fd)
                self.give(fd)
                os.fsync(fd)
                st = _lstat(name, dfd)
                if st is not None:
                    raise self.refused(path, 'is there already (%s)'
                                       % _kind(st))
                os.rename(name + disk.PART_SUFFIX, name, src_dir_fd=dfd,
                          dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(name + disk.PART_SUFFIX, dir_fd=dfd)
                raise
            finally:
                os.close(fd)
            os.fsync(dfd)

    # -- the operations ----------------------------------------------------
    def exists(self, path):
        return self.lstat(path) is not None

    def isdir(self, path):
        st = self.lstat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def listdir(self, path):
        try:
            with self.directory(path) as fd:
                return sorted(os.listdir(fd))
        except FileNotFoundError:
            return []

    def getsize(self, path):
        """Size of the file ``path`` (refused unless a file of its own),
        None if there is none."""
        st = self.lstat(path)
        if st is None:
            return None
        return self.check_file(path, st).st_size

    def makedir(self, path):
        """Create the directory ``path`` (0700, the owner's); one that is
        there already must be a directory (no link) of the owner or ours."""
        with self.parent(path) as (dfd, name):
            try:
                os.mkdir(name, DIR_MODE, dir_fd=dfd)
                made = True
            except FileExistsError:
                made = False
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
            except FileNotFoundError:
                raise
            except OSError:
                raise self.refused(path, 'is %s, not a directory' % _kind(
                    _lstat(name, dfd))) from None
            try:
                st = os.fstat(fd)
                if not self._trusted(st.st_uid):
                    raise self.refused(path, 'is a directory of uid %d'
                                       % st.st_uid)
                if made:
                    owner = self.owner()
                    if owner is not None:
                        os.fchown(fd, owner[0], owner[1])
                    os.fchmod(fd, DIR_MODE)
                    os.fsync(dfd)
            finally:
                os.close(fd)

    def read_text(self, path):
        with self.open_file(path) as fd:
            with open(os.dup(fd), closefd=True) as handle:
                return handle.read()

    def read_tail(self, path, limit):
        """The last ``limit`` bytes of the file ``path`` (checked)."""
        with self.open_file(path) as fd:
            size = os.fstat(fd).st_size
            start = max(0, size - limit)
            chunks = []
            while start < size:
                chunk = os.pread(fd, size - start, start)
                if not chunk:
                    break
                chunks.append(chunk)
                start += len(chunk)
            return b''.join(chunks)

    def write_atomic(self, path, text, suffix):
        """Write ``text`` to ``path`` through ``path + suffix``: ours
        while written, then the owner's (0600) under its final name."""
        with self.parent(path) as (dfd, name):
            part = name + suffix
            fd = self.create(dfd, part, path + suffix)
            try:
                disk.write_all(fd, text if isinstance(text, bytes)
                               else text.encode())
                os.fsync(fd)
                self.give(fd)
                there = _lstat(name, dfd)
                if there is not None and stat.S_ISDIR(there.st_mode):
                    raise self.refused(path, 'is a directory')
                os.rename(part, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except (OSError, exception.DiskError) as exc:
                with contextlib.suppress(OSError):
                    os.unlink(part, dir_fd=dfd)
                if isinstance(exc, exception.DiskError):
                    raise
                raise self.failed(path, exc) from None
            finally:
                os.close(fd)
            os.fsync(dfd)

    def rename(self, old, new):
        """Rename the directory ``old`` to ``new`` (same parent)."""
        with self.parent(old) as (dfd, name):
            if os.path.dirname(os.path.abspath(new)) != os.path.dirname(
                    os.path.abspath(old)):
                raise exception.DiskError(
                    host=self.host, reason='cannot rename %s to %s: '
                    'another directory' % (old, new))
            st = _lstat(name, dfd)
            if st is None:
                raise self.failed(old, FileNotFoundError(
                    2, 'No such file or directory'))
            if not stat.S_ISDIR(st.st_mode):
                raise self.refused(old, 'is %s, not a directory'
                                   % _kind(st))
            if not self._trusted(st.st_uid):
                raise self.refused(old, 'is a directory of uid %d'
                                   % st.st_uid)
            os.rename(name, os.path.basename(new), src_dir_fd=dfd,
                      dst_dir_fd=dfd)
            os.fsync(dfd)

    def rmtree(self, path):
        """Remove the directory ``path`` and what it holds, following no
        link; False if it was not there. A link there is refused."""
        try:
            with self.parent(path) as (dfd, name):
                st = _lstat(name, dfd)
                if st is None:
                    return False
                if not stat.S_ISDIR(st.st_mode):
                    raise self.refused(path, 'is %s, not a directory'
                                       % _kind(st))
                if not self._trusted(st.st_uid):
                    raise self.refused(path, 'is a directory of uid %d'
                                       % st.st_uid)
                assert shutil.rmtree.avoids_symlink_attacks
                shutil.rmtree(name, dir_fd=dfd)
                os.fsync(dfd)
                return True
        except FileNotFoundError:
            return False

    def rmdir_if_empty(self, path):
        """Remove the directory ``path`` if it holds nothing (one rmdir:
        a file put there meanwhile keeps it); False if it stays or was not
        there. A link there is refused."""
        try:
            with self.parent(path) as (dfd, name):
                st = _lstat(name, dfd)
                if st is None:
                    return False
                if not stat.S_ISDIR(st.st_mode):
                    raise self.refused(path, 'is %s, not a directory'
                                       % _kind(st))
                os.rmdir(name, dir_fd=dfd)
                return True
        except (FileNotFoundError, OSError) as e:
            if getattr(e, 'errno', None) in (errno.ENOTEMPTY, errno.EEXIST,
                                             errno.ENOENT):
                return False
            raise

    def unlink(self, path):
        """Remove the file (or link: not followed) ``path``; a directory
        there is refused. False if there was nothing."""
        try:
            with self.parent(path) as (dfd, name):
                st = _lstat(name, dfd)
                if st is None:
                    return False
                if stat.S_ISDIR(st.st_mode):
                    raise self.refused(path, 'is a directory')
                os.unlink(name, dir_fd=dfd)
                return True
        except FileNotFoundError:
            return False

    def adopt(self, path):
        """Give the file ``path`` (checked) to the owner, mode 0600."""
        with self.open_file(path) as fd:
            self.give(fd)

    def run_as_owner(self, *argv):
        """Run ``argv`` (qemu-img) as the owner of the instances path
        with a umask of 077; its stdout. ``DiskError`` if it fails."""
        kwargs = {}
        owner = self.owner()
        if owner is not None and owner[0] != os.geteuid():
            kwargs = {'user': owner[0], 'group': owner[1],
                      'extra_groups': []}
        try:
            proc = subprocess.run(argv, capture_output=True, text=True,
                                  check=False, umask=0o077, **kwargs)
        except OSError as exc:
            raise exception.DiskError(host=self.host,
                                      reason='%s: %s' % (argv[0], exc))
        if proc.returncode != 0:
            raise exception.DiskError(
                host=self.host, reason='%s failed (%d): %s' % (
                    ' '.join(argv), proc.returncode,
                    (proc.stderr or proc.stdout).strip()))
        return proc.stdout


def _lstat(name, dfd):
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _kind(st):
    if st is None:
        return 'gone'
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return 'a symbolic link'
    if stat.S_ISDIR(mode):
        return 'a directory'
    if stat.S_ISREG(mode):
        return 'a file with %d hard links' % st.st_nlink if (
            st.st_nlink != 1) else 'a file'
    return 'not a regular file'
