"""The file operations of a host's image cache, on both kinds of host.

:class:`LocalOps` and :class:`SshOps` are parts of
:class:`.files.LocalFiles` and :class:`.files.SshFiles` (kept here to keep
that module short): list a directory with what each entry is
(:meth:`~LocalOps.scan`), the sha256 of a file, touch, remove or rename a
file, make a formatted blank file, and hold the lock of a fetch
(:meth:`~LocalOps.fetch_lock`: ``flock`` on a lock file, here or by a
long-lived ``flock`` over ssh, released when this process dies; its
holder beats while its fetch moves, so that a waiter can tell a stalled
holder from a slow one: :class:`FetchLock`). They
work as the rest of those classes do: on this machine through
:mod:`.guarded` (no link followed, no file trusted that is not a regular
file with one link of the owner or ours), on another one with the
``plain``/``realdir`` guards of :mod:`.remote`, as the owner of the
instances path.
"""
import collections
import contextlib
import fcntl
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
#: Seconds between two tries of a lock held by another process.
_LOCK_POLL = 0.2
#: Seconds a released ssh lock holder has to exit before it is killed.
_LOCK_EXIT = 10
#: A hash ticks after every this many bytes read.
_TICK_BYTES = 64 << 20
#: How a remote hash tells how far it has read, and how often (seconds).
_POS_TAG, _POS_EVERY = 'rf-hashed', 0.1
#: Most seconds between two beats of a lock's holder.
_BEAT_MAX = 1.0
#: What a try of a lock ends in: held, held by another for the whole
#: timeout, or held by another that did not beat for ``stale`` seconds.
_HELD, _TIMED_OUT, _STALE = 'held', 'timed out', 'stale'
#: The exit status of the ssh lock script for a stale holder.
_STALE_EXIT = 4


class FetchLock:
    """What :meth:`LocalOps.fetch_lock` yields: true while the lock is
    held. Its holder calls :meth:`beat` as its fetch moves (bytes copied
    or hashed), which touches the lock file at most every
    ``min(1, stale / 4)`` seconds. A process waiting for the lock with
    ``stale`` set gives up when the lock file went that long without a
    beat (nor was it touched since that process began to wait): its holder
    is alive but stalled (SIGSTOP, a hung disk), and may stay so for ever.
    ``stale`` then says why the lock was not held."""

    def __init__(self, held, stale=False, touch=None, every=_BEAT_MAX):
        self.held = held
        self.stale = stale
        self._touch = touch
        self._every = every
        self._last = time.monotonic()

    def __bool__(self):
        return self.held

    def beat(self):
        if not self.held or self._touch is None:
            return
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            self._touch()


def _beat_every(stale):
    return min(_BEAT_MAX, stale / 4.0) if stale > 0 else _BEAT_MAX


_LOCK_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
               | os.O_NONBLOCK | os.O_NOCTTY)


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

    def sha256(self, path, tick=None):
        """The sha256 (hex) of the file ``path``, read through a
        descriptor of a checked file; None if there is none. ``tick()``
        is called after every 64 MiB read (a long hash is progress)."""
        try:
            with self.area.open_file(path) as fd:
                digest = hashlib.sha256()
                done, next_tick = 0, _TICK_BYTES
                while True:
                    chunk = os.read(fd, 1 << 20)
                    if not chunk:
                        return digest.hexdigest()
                    digest.update(chunk)
                    done += len(chunk)
                    while tick is not None and done >= next_tick:
                        next_tick += _TICK_BYTES
                        tick()
        except FileNotFoundError:
            return None

    def identity(self, path):
        """What changes whenever the file ``path`` does: (device, inode,
        size, mtime, ctime) of a checked file, times in nanoseconds; None
        if there is none. Its owner cannot set the ctime back: a write, a
        rename, new times or a new mode move it to now."""
        try:
            with self.area.open_file(path) as fd:
                st = os.fstat(fd)
                return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                        st.st_ctime_ns)
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

    @contextlib.contextmanager
    def fetch_lock(self, path, timeout, stale=0):
        """Hold an exclusive ``flock`` of the file ``path`` (created 0600
        if missing, no link followed; refused unless a regular file with
        one link of ours or of the owner): yields a :class:`FetchLock`,
        true while held; false if another process held it for ``timeout``
        seconds, or (``stale`` > 0) held it without a beat for ``stale``
        seconds. The kernel drops it when this process dies. A lock file
        removed (by :func:`.imagecache.clean`, which holds it then) while
        we waited is opened again: what is held is the file under the
        name."""
        deadline = time.monotonic() + max(timeout, 0)
        since = time.time()
        with self.area.parent(path) as (dfd, name):
            while True:
                fd = self._open_lock(dfd, name, path)
                try:
                    got = _flock(fd, deadline, stale, since)
                    if got == _HELD and _same_file(
                            fd, disk.lstat_at(name, dfd)):
                        os.utime(fd)      # young while held
                        lock = FetchLock(True, touch=lambda: os.utime(fd),
                                         every=_beat_every(stale))
                        try:
                            yield lock
                        finally:
                            lock.held = False   # no beat on a closed fd
                        return
                    if got != _HELD:
                        yield FetchLock(False, stale=got == _STALE)
                        return
                finally:
                    os.close(fd)

    def _open_lock(self, dfd, name, path):
        try:
            fd = os.open(name, _LOCK_FLAGS, 0o600, dir_fd=dfd)
        except OSError as exc:
            st = disk.lstat_at(name, dfd)
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise disk.refused(self.host, path, 'is %s'
                                   % disk.kind(st)) from None
            raise self.area.failed(path, exc) from None
        try:
            self.area.check_file(path, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

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

    def sha256(self, path, tick=None):
        # sha256sum in the background, and while it runs how far it has
        # read (the offset of its stdin, from /proc) on stderr every
        # _POS_EVERY seconds, then the size it read: tick() after every
        # 64 MiB read. The loop ends when its descriptor is gone (it
        # exited, even as a zombie).
        guard = 'realdir {1}; plain {0}; if test -e {0}; then '.format(
            remote.q(path), remote.q(posixpath.dirname(path)))
        if tick is None:
            out = self.run(guard + 'sha256sum < %s; fi' % remote.q(path))
            return out.split()[0].decode() if out.strip() else None
        script = guard + (
            'sha256sum < {0} & p=$!; while sed -n "s/^pos:[[:space:]]*/'
            '{1} /p" /proc/$p/fdinfo/0 >&2 2>/dev/null; do sleep {2}; '
            'done; wait $p || exit $?; echo "{1} $(stat -L -c %s {0})" '
            '>&2; fi'.format(remote.q(path), _POS_TAG, _POS_EVERY))
        ticked = [0]

        def read(line):
            tag, _, pos = line.decode(errors='replace').partition(' ')
            if tag != _POS_TAG or not pos.strip().isdigit():
                return False
            while int(pos) >= (ticked[0] + 1) * _TICK_BYTES:
                ticked[0] += 1
                tick()
            return True
        out = self.run(script, on_stderr=read)
        return out.split()[0].decode() if out.strip() else None

    def identity(self, path):
        # find's %T@ and %C@: seconds with their fraction (nanoseconds);
        # run from / (see scan).
        out = self.run('realdir {1}; plain {0}; if test -e {0}; then '
                       'cd / && find {0} -maxdepth 0 -printf '
                       '"%D %i %s %T@ %C@"; fi'.format(
                           remote.q(path),
                           remote.q(posixpath.dirname(path))))
        return tuple(out.decode().split()) if out.strip() else None

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

    @contextlib.contextmanager
    def fetch_lock(self, path, timeout, stale=0):
        # A flock held on the machine by a process whose stdin is ours:
        # closed (released, or this process died), its loop ends, and
        # with it the lock; each line it reads is a beat (the lock file
        # touched through the descriptor that holds it). A waiter tries
        # every _LOCK_POLL seconds, and gives up at the timeout (exit 1)
        # or when the lock file went ``stale`` seconds without a beat
        # (exit 4), by the machine's clock. A lock file removed while we
        # waited is opened again.
        folder = posixpath.dirname(path)
        script = (
            'realdir {1}; plain {0}; start=$(date +%s); '
            'end=$((start + {2})); while :; do exec 9<>{0}; plain {0}; '
            'until flock -n 9; do now=$(date +%s); if [ {3} -gt 0 ]; then '
            'm=$(stat -L -c %Y /dev/fd/9) || m=$now; '
            '[ "$m" -gt "$start" ] || m=$start; '
            '[ $((now - m)) -ge {3} ] && exit {5}; fi; '
            '[ "$now" -ge "$end" ] && exit 1; sleep {4}; done; '
            '[ "$(stat -L -c %d:%i /dev/fd/9)" = "$(stat -c %d:%i {0} '
            '2>/dev/null)" ] && break; exec 9<&-; done; '
            'touch -c /dev/fd/9; echo locked; '
            'while read -r beat; do touch -c /dev/fd/9; done'.format(
                remote.q(path), remote.q(folder), max(int(timeout), 0),
                max(int(stale), 0), _LOCK_POLL, _STALE_EXIT))
        argv = remote.ssh_argv(self.address) + [
            '--', remote.as_owner_command(self.instances_path, script)]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
        except OSError as exc:
            raise exception.HypervisorUnavailable(
                host=self.host, reason='%s: %s' % (argv[0], exc))
        try:
            if proc.stdout.readline().strip() == b'locked':
                lock = FetchLock(True, touch=lambda: _beat_holder(proc),
                                 every=_beat_every(stale))
                try:
                    yield lock
                finally:
                    lock.held = False
                return
            _out, stderr = proc.communicate()
            status = proc.returncode
            if status in (1, _STALE_EXIT):
                yield FetchLock(False, stale=status == _STALE_EXIT)
                return
            _raise_for(self, status, stderr, 'flock %s' % path)
        finally:
            _end_holder(proc)

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


def _flock(fd, deadline, stale=0, since=0.0):
    """Lock ``fd`` (LOCK_EX), trying until ``deadline``, or until the
    file went ``stale`` seconds (> 0) without a beat of its holder nor a
    touch since ``since`` (when the wait began, by the clock):
    ``_HELD``, ``_TIMED_OUT`` or ``_STALE``."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return _HELD
        except BlockingIOError:
            if stale > 0 and time.time() - max(
                    os.fstat(fd).st_mtime, since) >= stale:
                return _STALE
            if time.monotonic() >= deadline:
                return _TIMED_OUT
            time.sleep(_LOCK_POLL)


def _same_file(fd, st):
    here = os.fstat(fd)
    return st is not None and (
        (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino))


def _raise_for(files, status, stderr, what):
    message = remote.last_line(stderr)
    if status == remote.SSH_FAILED:
        raise exception.HypervisorUnavailable(
            host=files.host, reason='ssh %s: %s' % (files.address, message))
    if message.startswith('refused: '):
        raise exception.DiskError(host=files.host, reason='on %s: %s'
                                  % (files.address, message))
    raise exception.DiskError(host=files.host, reason='on %s: %s failed '
                              '(%d): %s' % (files.address, what, status,
                                            message))


def _beat_holder(proc):
    """A beat of an ssh lock holder: a line on its stdin (lost if it
    is gone: its lock is too)."""
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.write(b'beat\n')
        proc.stdin.flush()


def _end_holder(proc):
    """Release the lock of an ssh lock holder: close its stdin, wait for
    it (killed if it does not go)."""
    with contextlib.suppress(OSError):
        proc.stdin.close()
    try:
        proc.wait(timeout=_LOCK_EXIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()
