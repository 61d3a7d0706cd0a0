"""The resumable sparse copy of a disk on this machine.

:func:`sparse_copy` copies a file's data, not its holes, into
``<dst>.part``, commits its progress chunk by chunk in a sidecar
(``<dst>.part.progress``) on a thread of its own, and resumes a copy cut
off by a crash from the last chunk it can verify. It follows no link and
trusts no file it did not make (:func:`.disk.ours`). It leaves neither
file in the host's page cache (see :func:`sparse_copy`).
"""
import dataclasses
import errno
import json
import os
import stat
import threading

from resize_flows import exception
from resize_flows.virt.libvirt import disk

# Sidecar of a partial copy: ``<dst>.part.progress`` records how far it is.
PROGRESS_SUFFIX = '.progress'
# Bytes of data copied between two commits of a copy's progress: 1/64 of
# the data, within these bounds. Each commit costs two syncs, and a move
# copies several files (root, ephemeral, swap...): below 32 MiB the syncs
# of an instance directory's files cost a fifth of its copy's throughput
# on a busy disk (benchmarks/instance_move.py); a crash loses at most
# two chunks.
COPY_CHUNK = 64 * disk.MiB
COPY_CHUNK_MIN = 32 * disk.MiB
_CHUNK_ALIGN = 64 * 1024
# Bytes per copy_file_range / pread call.
_IO_BLOCK = 8 * disk.MiB
# Each chunk's drop from the page cache starts this far below the end of
# the previous one (more than the largest folio of the page cache).
_DROP_OVERLAP = 16 * disk.MiB


@dataclasses.dataclass
class CopyStats:
    """What one :func:`sparse_copy` call did, in bytes."""
    size: int = 0          # apparent size of the source file
    data: int = 0          # data (not holes) in the source
    copied: int = 0        # data this call wrote
    reused: int = 0        # data kept from an interrupted earlier call
    verified: int = 0      # data compared with the source before reuse


def sparse_copy(src, dst, host, owner=None, progress=None,
                chunk_size=None, stats=None, src_fd=None, dst_dir_fd=None):
    """Copy ``src`` to ``dst`` skipping holes, resumably.

    The data extents of ``src`` (SEEK_DATA / SEEK_HOLE) are copied into
    ``dst.part`` (copy_file_range) in chunks of ``chunk_size`` bytes of data
    (by default 1/64 of the data, within 32 to 64 MiB), allocated up front
    (posix_fallocate) so the copy is no more fragmented than its source;
    the rest stays unallocated (the size is set with ftruncate, no zero is
    written). Each written chunk is committed on a thread of its own while
    the copy goes on: fdatasync of ``dst.part``, then its end offset, with
    the identity of the source (inode, size, mtime) and of ``dst.part``,
    into the sidecar ``dst.part.progress`` (temp file, fsync, rename). The
    copy waits when two chunks wait for their commit, so a crash loses at
    most two.

    A later call finds both files and, when the identities still match,
    compares the last committed chunk with the source and continues after
    it; if that chunk differs, the one before it; if that differs too, or
    anything else does not match, it starts over. Whatever lies beyond the
    resume point is cut off first, so holes stay holes.

    ``progress(fraction)`` is called with the share of the source's data
    written to ``dst.part`` (never decreasing: at the start, after each
    chunk, 1.0 once complete); an exception it raises stops the copy and
    leaves the partial copy, committed up to the last chunk written, to be
    resumed.
    When complete, ``dst.part`` is given to ``owner`` (mode 0600),
    fsynced, renamed to ``dst`` and the sidecar removed.

    The copy keeps neither file in the page cache: as each chunk is
    committed, both files are dropped from it below that chunk's end,
    and wholly once the copy is complete (POSIX_FADV_DONTNEED). A move's
    disks are read once here and then by a guest that opens them without
    the host's cache (the domain's disks have cache='none'), so caching
    them would only push out what the host's other guests and processes
    use; and when one copy follows another (a host drained), the pages
    each copy left behind made the next ones slower: four files of 1 GiB
    copied back to back took 5.3 to 10.4 s, against 3.9 s when the cache
    was dropped between them (benchmarks/README.md, drain.py).

    No link is followed and no file trusted that this process did not
    make: ``dst.part`` and the sidecar belong to this process (0600) until
    the copy is complete, and one that is not a regular file of ours with
    one link is refused (``DiskError``, ``refused: ...``). ``src_fd`` (an
    open descriptor of ``src``) and ``dst_dir_fd`` (of the directory of
    ``dst``) let a caller hand over what it opened safely.

    Returns :class:`CopyStats` (``stats`` if given: it is filled in as the
    copy goes, so it tells what a cut-off copy did too); raises
    ``DiskError`` for a file system failure (the partial copy is kept for
    the next call).
    """
    stats = stats if stats is not None else CopyStats()
    name = os.path.basename(dst)
    part = name + disk.PART_SUFFIX
    sidecar = part + PROGRESS_SUFFIX
    closing = []
    try:
        if dst_dir_fd is None:
            dst_dir_fd = os.open(os.path.dirname(os.path.abspath(dst)),
                                 os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            closing.append(dst_dir_fd)
        if src_fd is None:
            src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            closing.append(src_fd)
        fd_in = src_fd
        source = _identity(os.fstat(fd_in))
        stats.size = source['size']
        extents = list(_data_extents(fd_in, stats.size))
        stats.data = sum(end - start for start, end in extents)
        chunk_size = int(chunk_size or _default_chunk(stats.data))
        fd_out = _open_part(dst_dir_fd, part, dst + disk.PART_SUFFIX, host)
        try:
            _copy_chunks(fd_in, fd_out, dst_dir_fd, sidecar, source,
                         extents, chunk_size, progress, stats, host)
            # Complete: the owner's from now on, then its name.
            if owner is not None:
                os.fchown(fd_out, owner[0], owner[1])
            os.fchmod(fd_out, 0o600)
            os.fsync(fd_out)
            _drop_cache(fd_in, 0, 0)
            _drop_cache(fd_out, 0, 0)
        finally:
            os.close(fd_out)
        st = disk.lstat_at(name, dst_dir_fd)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise disk.refused(host, dst, 'is a directory')
        os.rename(part, name, src_dir_fd=dst_dir_fd, dst_dir_fd=dst_dir_fd)
        os.fsync(dst_dir_fd)
        _unlink_at(sidecar, dst_dir_fd)
    except OSError as exc:
        raise exception.DiskError(
            host=host, reason='copy %s -> %s: %s' % (src, dst, exc))
    finally:
        for fd in closing:
            os.close(fd)
    _report(progress, stats.data, stats.data)
    return stats


def _open_part(dir_fd, name, path, host):
    """The partial copy ``name`` in ``dir_fd``: ours from an earlier
    call (reopened), or new (0600, O_EXCL); anything else is refused."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL
                       | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError:
        raise disk.refused(host, path, 'is %s' % disk.kind(
            disk.lstat_at(name, dir_fd))) from None
    st = os.fstat(fd)
    if not disk.ours(st):
        os.close(fd)
        raise disk.refused(host, path, 'is %s of uid %d, not a partial '
                           'copy of ours' % (disk.kind(st), st.st_uid))
    os.set_blocking(fd, True)
    return fd


def _unlink_at(name, dir_fd):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _default_chunk(data):
    chunk = min(max(data // 64, COPY_CHUNK_MIN), COPY_CHUNK)
    return -(-chunk // _CHUNK_ALIGN) * _CHUNK_ALIGN


def _copy_chunks(fd_in, fd_out, dir_fd, sidecar, source, extents,
                 chunk_size, progress, stats, host):
    st = disk.lstat_at(sidecar, dir_fd)
    if st is not None and not disk.ours(st):
        raise disk.refused(host, sidecar, 'is %s of uid %d, not a sidecar '
                           'of ours' % (disk.kind(st), st.st_uid))
    offset = _resume_point(fd_in, fd_out, dir_fd, sidecar, source, extents,
                           stats)
    if offset == 0 and disk.lstat_at(sidecar, dir_fd) is not None:
        # Durably gone before the part is emptied: a sidecar that came
        # back after a crash would vouch for data no longer there.
        os.unlink(sidecar, dir_fd=dir_fd)
        os.fsync(dir_fd)
    os.ftruncate(fd_out, offset)               # drop the uncommitted
    os.ftruncate(fd_out, stats.size)
    _preallocate(fd_out, extents, offset)
    committer = _Committer(fd_in, fd_out, dir_fd, sidecar, host, {
        'format': 1, 'source': source,
        'part_ino': os.fstat(fd_out).st_ino,
        'chunk_size': chunk_size, 'committed': offset})
    done = stats.reused
    try:
        _report(progress, done, stats.data)
        for pieces in _chunks(extents, offset, chunk_size):
            for start, end in pieces:
                _copy_range(fd_in, fd_out, start, end)
                done += end - start
                stats.copied += end - start
            committer.submit(pieces[-1][1])
            if done < stats.data:
                _report(progress, done, stats.data)
    except BaseException:
        committer.close(flush=True)
        raise
    committer.close(flush=False)


def _preallocate(fd, extents, offset):
    """Allocate the data extents at or after ``offset`` at once, so that
    the copy is as little fragmented as the source (a commit every chunk
    would otherwise make the file system allocate chunk by chunk), and a
    full file system fails the copy now. Skipped where unsupported."""
    for start, end in extents:
        start = max(start, offset)
        if start < end:
            try:
                os.posix_fallocate(fd, start, end - start)
            except OSError as exc:
                if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL,
                                 errno.ENOSYS):
                    return
                raise


class _Committer:
    """Commits the progress of a copy on a thread of its own: fdatasync of
    the partial copy, then the offset it holds the data up to into the
    sidecar, for the newest offset handed over; and drops what lies below
    that offset in both files from the page cache. :meth:`submit` waits
    while ``lag`` offsets are not committed yet."""

    def __init__(self, fd_in, fd, dir_fd, sidecar, host, state, lag=2):
        self._fd_in = fd_in
        self._fd = fd
        self._dir_fd = dir_fd
        self._sidecar = sidecar
        self._host = host
        self._state = state
        self._lag = lag
        self._cond = threading.Condition()
        self._pending = None           # (number, offset) to commit next
        self._submitted = 0            # numbers of the offsets handed over
        self._committed = 0            # ... and committed
        self._closing = False
        self._error = None
        self._dropped = state['committed']     # cache dropped below it
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='copy-commit')
        self._thread.start()

    def submit(self, offset):
        with self._cond:
            self._submitted += 1
            self._pending = (self._submitted, offset)
            self._cond.notify_all()
            while (self._error is None
                   and self._submitted - self._committed >= self._lag):
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def close(self, flush):
        """Stop the thread once it committed what it is at (and, with
        ``flush``, the offset waiting); raise what it failed with, unless
        flushing on the way out of an error."""
        with self._cond:
            self._closing = True
            if not flush:
                self._pending = None
            self._cond.notify_all()
        self._thread.join()
        if self._error is not None and not flush:
            raise self._error

    def _run(self):
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
                number, offset = self._pending
                self._pending = None
            try:
                os.fdatasync(self._fd)
                # From a little below the last range dropped: the cache
                # holds large folios, and one that straddled that range's
                # end was kept whole.
                start = max(self._dropped - _DROP_OVERLAP, 0)
                _drop_cache(self._fd_in, start, offset)
                _drop_cache(self._fd, start, offset)
                self._dropped = offset
                self._state['committed'] = offset
                _write_sidecar(self._dir_fd, self._sidecar, self._state,
                               self._host)
            except (OSError, exception.DiskError) as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._committed = number
                self._cond.notify_all()


def _drop_cache(fd, start, end):
    """Drop ``fd``'s pages between ``start`` and ``end`` (0: the end of
    the file) from the page cache; dirty ones stay. A hint: where it is
    not supported nothing happens."""
    if end and end <= start:
        return
    try:
        os.posix_fadvise(fd, start, end - start if end else 0,
                         os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def _identity(st):
    return {'ino': st.st_ino, 'size': st.st_size, 'mtime_ns': st.st_mtime_ns}


def _report(progress, done, total):
    if progress is not None:
        progress(done / total if total else 1.0)


def _write_sidecar(dir_fd, name, state, host):
    """The sidecar ``name`` in ``dir_fd``: ours (0600), through a
    temporary file and a rename."""
    tmp = name + '.tmp'
    st = disk.lstat_at(tmp, dir_fd)
    if st is not None:
        if not disk.ours(st):
            raise disk.refused(host, tmp, 'is %s of uid %d'
                               % (disk.kind(st), st.st_uid))
        os.unlink(tmp, dir_fd=dir_fd)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        os.write(fd, json.dumps(state, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _read_sidecar(dir_fd, name):
    """The state in the sidecar ``name``, if it is a file of ours."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not disk.ours(os.fstat(fd)):
            return None
        with open(os.dup(fd)) as handle:
            state = json.load(handle)
        int(state['committed']), int(state['chunk_size'])
        return state
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)


def _resume_point(fd_in, fd_out, dir_fd, sidecar, source, extents, stats):
    """Offset of ``src`` up to which ``dst.part`` holds the source's data
    (0: start over); counts the reused and verified bytes in ``stats``."""
    state = _read_sidecar(dir_fd, sidecar)
    if (state is None or state.get('format') != 1
            or state.get('source') != source
            or state.get('part_ino') != os.fstat(fd_out).st_ino
            or os.fstat(fd_out).st_size != source['size']):
        return 0
    offset = min(int(state['committed']), source['size'])
    window = max(int(state['chunk_size']), 1)
    for _attempt in range(2):             # the last chunk, then the one before
        if offset <= 0:
            return 0
        pieces = _data_before(extents, offset, window)
        if not pieces:
            return 0
        stats.verified += sum(end - start for start, end in pieces)
        if all(_same(fd_in, fd_out, start, end) for start, end in pieces):
            stats.reused = _data_below(extents, offset)
            return offset
        offset = pieces[0][0]
    return 0


def _data_below(extents, offset):
    return sum(min(end, offset) - start for start, end in extents
               if start < offset)


def _data_before(extents, offset, nbytes):
    """The last ``nbytes`` of data below ``offset`` as (start, end) pieces
    in file order."""
    pieces = []
    for start, end in reversed(extents):
        if nbytes <= 0:
            break
        end = min(end, offset)
        if start >= end:
            continue
        start = max(start, end - nbytes)
        pieces.append((start, end))
        nbytes -= end - start
    pieces.reverse()
    return pieces


def _chunks(extents, offset, chunk_size):
    """The data at or after ``offset`` as lists of (start, end) pieces of
    ``chunk_size`` bytes of data each (the last one less)."""
    pieces, room = [], chunk_size
    for start, end in extents:
        start = max(start, offset)
        while start < end:
            take = min(end - start, room)
            pieces.append((start, start + take))
            start += take
            room -= take
            if room == 0:
                yield pieces
                pieces, room = [], chunk_size
    if pieces:
        yield pieces


def _same(fd_a, fd_b, start, end):
    while start < end:
        count = min(_IO_BLOCK, end - start)
        data = os.pread(fd_a, count, start)
        if not data or os.pread(fd_b, count, start) != data:
            return False
        start += len(data)
    return True


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
        count = min(_IO_BLOCK, end - offset)
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
