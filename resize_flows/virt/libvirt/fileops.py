"""The file operations of a host's image cache, on both kinds of host.

:class:`LocalOps` and :class:`SshOps` are parts of
:class:`.files.LocalFiles` and :class:`.files.SshFiles` (kept here to keep
that module short): list a directory with what each entry is
(:meth:`~LocalOps.scan`), the sha256 of a file, touch, remove or rename a
file, and make a formatted blank file. They work as the rest of those
classes do: on this machine through :mod:`.guarded` (no link followed, no
file trusted that is not a regular file with one link of the owner or
ours), on another one with the ``plain``/``realdir`` guards of
:mod:`.remote`, as the owner of the instances path.
"""
import collections
import contextlib
import hashlib
import os
import posixpath
import stat
import subprocess
import time

from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import remote

#: What ``scan`` tells of an entry of a directory (no link followed):
#: ``kind`` 'file', 'dir', 'link' or 'other', its number of links, size,
#: bytes allocated on disk, and seconds since it last changed (mtime or
#: ctime, the later) by the clock of its machine.
Entry = collections.namedtuple('Entry', 'kind nlink size allocated age')

_KINDS = {'f': 'file', 'd': 'dir', 'l': 'link'}


class LocalOps:
    """For :class:`.files.LocalFiles` (``self.area``, ``self.host``)."""

    def scan(self, path):
        """{name: :data:`Entry`} of the directory ``path`` (empty if
        there is none), from lstat: no link followed."""
        try:
            with self.area.directory(path) as fd:
                now = time.time()
                found = {}
                for name in os.listdir(fd):
                    st = disk.lstat_at(name, fd)
                    if st is not None:
                        found[name] = _entry(st, now)
                return found
        except FileNotFoundError:
            return {}

    def sha256(self, path):
        """The sha256 (hex) of the file ``path``, read through a
        descriptor of a checked file; None if there is none."""
        try:
            with self.area.open_file(path) as fd:
                digest = hashlib.sha256()
                while True:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        return digest.hexdigest()
                    digest.update(chunk)
        except FileNotFoundError:
            return None

    def touch(self, path):
        """Set the times of the file ``path`` (checked) to now; False if
        there is none."""
        try:
            with self.area.open_file(path) as fd:
                os.utime(fd)
                return True
        except FileNotFoundError:
            return False

    def remove_file(self, path):
        """Remove the file ``path``: only a regular file with one link
        (a link, a directory or a hard link is refused and left); False
        if there was nothing."""
        try:
            with self.area.parent(path) as (dfd, name):
                st = disk.lstat_at(name, dfd)
                if st is None:
                    return False
                self.area.check_file(path, st)
                os.unlink(name, dir_fd=dfd)
                os.fsync(dfd)
                return True
        except FileNotFoundError:
            return False

    def replace(self, old, new):
        """Rename the file ``old`` to ``new`` in its directory, replacing
        a file there (a link or a directory at either name is refused)."""
        if os.path.dirname(os.path.abspath(old)) != os.path.dirname(
                os.path.abspath(new)):
            raise exception.DiskError(
                host=self.host, reason='cannot rename %s to %s: another '
                'directory' % (old, new))
        with self.area.parent(old) as (dfd, name):
            self.area.check_file(old, disk.lstat_at(name, dfd))
            other = os.path.basename(new)
            st = disk.lstat_at(other, dfd)
            if st is not None:
                self.area.check_file(new, st)
            os.rename(name, other, src_dir_fd=dfd, dst_dir_fd=dfd)
            os.fsync(dfd)

    def make_blank(self, path, size_bytes, argv, env=None):
        """A new file ``path`` of ``size_bytes`` (sparse), formatted by
        ``argv`` + [the file] (mke2fs, mkswap) with ``env`` added to the
        environment; made as :meth:`create_disk` makes a disk, under
        ``path`` itself (the caller renames it into place)."""
        with self.area.parent(path) as (dfd, name):
            fd = self.area.create(dfd, name, path)
            try:
                os.ftruncate(fd, size_bytes)
                _run_env(self.host, list(argv) + ['/dev/fd/%d' % fd], env,
                         pass_fds=(fd,))
                self.area.give(fd)
                os.fsync(fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=dfd)
                raise
            finally:
                os.close(fd)
            os.fsync(dfd)


class SshOps:
    """For :class:`.files.SshFiles` (``self.run``, ``self.host``)."""

    def scan(self, path):
        # One command: find's -printf of each entry (no link followed),
        # NUL-separated (a name may hold anything else), after the
        # machine's own clock.
        # (From /: find goes back to where it started, which the owner
        # may not enter.)
        out = self.run('realdir {0}; cd / && date +%s.%N; if test -d {0}; '
                       'then find {0} -mindepth 1 -maxdepth 1 -printf '
                       '"%y %n %s %b %T@ %C@ %f\\0"; fi'.format(
                           remote.q(path)))
        head, _, rest = out.partition(b'\n')
        now = float(head)
        found = {}
        for item in rest.split(b'\0'):
            if not item:
                continue
            kind, nlink, size, blocks, mtime, ctime, name = item.split(
                b' ', 6)
            found[name.decode(errors='surrogateescape')] = Entry(
                _KINDS.get(kind.decode(), 'other'), int(nlink), int(size),
                int(blocks) * 512,
                now - max(float(mtime), float(ctime)))
        return found

    def sha256(self, path):
        out = self.run('realdir {1}; plain {0}; if test -e {0}; then '
                       'sha256sum < {0}; fi'.format(
                           remote.q(path), remote.q(posixpath.dirname(path))))
        return out.split()[0].decode() if out.strip() else None

    def touch(self, path):
        out = self.run('realdir {1}; plain {0}; if test -e {0}; then '
                       'touch -c {0} && echo touched; fi'.format(
                           remote.q(path), remote.q(posixpath.dirname(path))))
        return out.strip() == b'touched'

    def remove_file(self, path):
        out = self.run('realdir {1}; plain {0}; if test -e {0}; then '
                       'rm -f {0} && sync {1} && echo removed; fi'.format(
                           remote.q(path), remote.q(posixpath.dirname(path))))
        return out.strip() == b'removed'

    def replace(self, old, new):
        folder = posixpath.dirname(old)
        if folder != posixpath.dirname(new):
            raise exception.DiskError(
                host=self.host, reason='cannot rename %s to %s: another '
                'directory' % (old, new))
        q = remote.q
        self.run('realdir %s; plain %s %s; test -e %s && mv -fT %s %s && '
                 'sync %s' % (q(folder), q(old), q(new), q(old), q(old),
                              q(new), q(folder)))

    def make_blank(self, path, size_bytes, argv, env=None):
        folder = posixpath.dirname(path)
        q = remote.q
        command = ' '.join(['%s=%s' % (k, q(v)) for k, v in
                            sorted((env or {}).items())]
                           + [q(a) for a in argv] + [q(path)])
        self.run('realdir %s; plain %s; ' % (q(folder), q(path))
                 + ' && '.join([
                     'rm -f %s' % q(path),
                     'truncate -s %d %s' % (size_bytes, q(path)),
                     command + ' >/dev/null', 'chmod 600 %s' % q(path),
                     'sync %s' % q(path), 'sync %s' % q(folder)]))


def _entry(st, now):
    mode = st.st_mode
    kind = ('link' if stat.S_ISLNK(mode) else 'dir' if stat.S_ISDIR(mode)
            else 'file' if stat.S_ISREG(mode) else 'other')
    return Entry(kind, st.st_nlink, st.st_size, st.st_blocks * 512,
                 now - max(st.st_mtime, st.st_ctime))


def _run_env(host, argv, env, pass_fds=()):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              check=False, pass_fds=pass_fds,
                              env=dict(os.environ, **(env or {})))
    except OSError as exc:
        raise exception.DiskError(host=host, reason='%s: %s' % (argv[0], exc))
    if proc.returncode != 0:
        raise exception.DiskError(host=host, reason='%s failed (%d): %s' % (
            ' '.join(argv), proc.returncode,
            (proc.stderr or proc.stdout).strip()))
