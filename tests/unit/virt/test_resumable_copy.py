"""The resumable sparse copy of disk.py on real files: sparse raw files
written at offsets, and qcow2 disks made by qemu-img and written by qemu-io.

An interrupted copy is one whose progress callback raised: the chunks it
committed are in ``disk.part`` and its sidecar, as after a crash (a crash
in the middle of a chunk also leaves uncommitted bytes, which
``test_uncommitted_bytes_are_cut_off`` adds by hand).
"""
import ctypes
import filecmp
import json
import mmap
import os
import random
import subprocess

import pytest

from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import sparsecopy

MiB = 1024 ** 2
CHUNK = 1 * MiB
# (offset MiB, length MiB) of the data extents of the raw source: 40 MiB of
# data in a 160 MiB file, holes between, before and after.
EXTENTS = ((1, 3), (8, 10), (30, 1), (40, 12), (70, 6), (100, 8),
           (130, 0.25), (140, 0.75))
RAW_SIZE = 160 * MiB


class Interrupted(Exception):
    pass


def _write_raw(path, seed=1):
    rand = random.Random(seed)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for offset, length in EXTENTS:
            os.pwrite(fd, rand.randbytes(int(length * MiB)),
                      int(offset * MiB))
        os.ftruncate(fd, RAW_SIZE)
        os.fsync(fd)      # allocated now, as a stashed disk is
    finally:
        os.close(fd)
    return path


def _data(path):
    with open(path, 'rb') as handle:
        return sum(end - start for start, end in sparsecopy._data_extents(
            handle.fileno(), os.fstat(handle.fileno()).st_size))


def _identical(a, b):
    return filecmp.cmp(a, b, shallow=False)


def _paths(tmp_path):
    dst = str(tmp_path / 'dst' / 'disk')
    os.mkdir(tmp_path / 'dst')
    part = dst + disk.PART_SUFFIX
    return dst, part, part + sparsecopy.PROGRESS_SUFFIX


@pytest.fixture
def raw(tmp_path):
    return _write_raw(str(tmp_path / 'src'))


@pytest.fixture
def qcow2(tmp_path):
    path = str(tmp_path / 'src.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path,
                    str(256 * MiB)], check=True)
    commands = []
    for i, (offset, length) in enumerate(((0, 3), (20, 5), (64, 2),
                                          (100, 7), (200, 4), (250, 6))):
        commands += ['-c', 'write -P 0x%02x %dM %dM' % (0xa0 + i, offset,
                                                        length)]
    subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                   check=True, capture_output=True)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return path


def _interrupt_at(fraction_wanted):
    seen = []

    def progress(fraction):
        seen.append(fraction)
        if fraction >= fraction_wanted:
            raise Interrupted()
    return progress, seen


def _interrupted_copy(src, dst, at=0.5):
    progress, _seen = _interrupt_at(at)
    stats = sparsecopy.CopyStats()
    with pytest.raises(Interrupted):
        sparsecopy.sparse_copy(src, dst, 'here', progress=progress,
                               chunk_size=CHUNK, stats=stats)
    return stats


def _committed(sidecar):
    with open(sidecar) as handle:
        return json.load(handle)['committed']


# -- whole copies ----------------------------------------------------------

@pytest.mark.parametrize('source', ['raw', 'qcow2'])
def test_full_copy_is_identical_and_sparse(request, tmp_path, source):
    src = request.getfixturevalue(source)
    dst, part, sidecar = _paths(tmp_path)
    seen = []
    stats = sparsecopy.sparse_copy(src, dst, 'here', progress=seen.append,
                                   chunk_size=CHUNK)
    assert _identical(src, dst)
    assert os.path.getsize(dst) == os.path.getsize(src)
    assert os.stat(dst).st_blocks <= os.stat(src).st_blocks
    assert stats.data == _data(src) == stats.copied
    assert (stats.reused, stats.verified) == (0, 0)
    assert not os.path.exists(part) and not os.path.exists(sidecar)
    assert seen == sorted(seen) and seen[-1] == 1.0 and seen[0] == 0.0
    # at most once per chunk (and once at the start)
    assert len(seen) <= stats.data // CHUNK + 2


def test_qcow2_copy_reads_back_what_qemu_io_wrote(tmp_path, qcow2):
    dst, _part, _sidecar = _paths(tmp_path)
    sparsecopy.sparse_copy(qcow2, dst, 'here', chunk_size=CHUNK)
    proc = subprocess.run(
        ['qemu-io', '-f', 'qcow2', '-c', 'read -P 0xa3 100M 7M', '-c',
         'read -P 0 10M 10M', dst], capture_output=True, text=True)
    assert proc.returncode == 0 and 'failed' not in proc.stdout
    subprocess.run(['qemu-img', 'compare', '-q', qcow2, dst], check=True)


def test_a_source_of_holes_only(tmp_path):
    src = str(tmp_path / 'holes')
    with open(src, 'wb') as handle:
        handle.truncate(8 * MiB)
    dst, _part, _sidecar = _paths(tmp_path)
    seen = []
    stats = sparsecopy.sparse_copy(src, dst, 'here', progress=seen.append)
    assert (stats.data, stats.copied) == (0, 0)
    assert os.path.getsize(dst) == 8 * MiB and os.stat(dst).st_blocks == 0
    assert seen[-1] == 1.0


# -- interrupted, then resumed --------------------------------------------

@pytest.mark.parametrize('source', ['raw', 'qcow2'])
def test_resume_after_half_copies_little_again(request, tmp_path, source):
    src = request.getfixturevalue(source)
    dst, part, sidecar = _paths(tmp_path)
    first = _interrupted_copy(src, dst)
    assert os.path.exists(part) and os.path.exists(sidecar)
    assert not os.path.exists(dst)
    assert 0.4 * first.data <= first.copied <= 0.7 * first.data

    seen = []
    second = sparsecopy.sparse_copy(src, dst, 'here', progress=seen.append,
                                    chunk_size=CHUNK)
    data = second.data
    assert second.reused > 0 and second.verified > 0
    assert second.reused + second.copied == data
    assert first.copied + second.copied - data <= 0.1 * data
    assert _identical(src, dst)
    assert os.stat(dst).st_blocks <= os.stat(src).st_blocks
    assert not os.path.exists(part) and not os.path.exists(sidecar)
    # progress goes on from where the first copy stopped, up to 1.0
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert seen[0] == second.reused / data


def test_uncommitted_bytes_are_cut_off(tmp_path, raw):
    """A crash in the middle of a chunk leaves bytes after the committed
    offset, some where the source has a hole: they are dropped."""
    dst, part, sidecar = _paths(tmp_path)
    _interrupted_copy(raw, dst)
    committed = _committed(sidecar)
    with open(part, 'r+b') as handle:
        handle.seek(committed + 1)
        handle.write(b'\xff' * 4096)
        handle.seek(RAW_SIZE - 8192)             # a hole of the source
        handle.write(b'\xee' * 4096)
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert stats.reused == sparsecopy._data_below(
        list(sparsecopy._data_extents(os.open(raw, os.O_RDONLY), RAW_SIZE)),
        committed)
    assert _identical(raw, dst)
    assert os.stat(dst).st_blocks <= os.stat(raw).st_blocks


def test_corrupted_committed_chunk_is_copied_again(tmp_path, raw):
    dst, part, sidecar = _paths(tmp_path)
    first = _interrupted_copy(raw, dst)
    committed = _committed(sidecar)
    with open(part, 'r+b') as handle:         # inside the last chunk
        handle.seek(committed - 1000)
        handle.write(b'\x00' * 10)
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert _identical(raw, dst)
    # the last chunk failed, the one before passed: two checked, one again
    assert stats.verified == 2 * CHUNK
    assert stats.reused == first.copied - CHUNK
    assert first.copied + stats.copied - stats.data == CHUNK


def test_two_corrupted_chunks_start_over(tmp_path, raw):
    dst, part, sidecar = _paths(tmp_path)
    _interrupted_copy(raw, dst)
    committed = _committed(sidecar)
    with open(part, 'r+b') as handle:
        for back in (1000, CHUNK + 1000):
            handle.seek(committed - back)
            handle.write(b'\x00' * 10)
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert stats.reused == 0 and stats.copied == stats.data
    assert _identical(raw, dst)


def test_changed_source_invalidates_the_partial_copy(tmp_path, raw):
    dst, _part, _sidecar = _paths(tmp_path)
    _interrupted_copy(raw, dst)
    _write_raw(raw, seed=2)                    # same layout, other bytes
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert (stats.reused, stats.verified) == (0, 0)
    assert stats.copied == stats.data
    assert _identical(raw, dst)


def test_source_with_the_same_size_and_mtime_but_other_bytes(tmp_path, raw):
    """Identity can be fooled (mtime put back); the comparison of the last
    chunk with the source is not."""
    dst, _part, _sidecar = _paths(tmp_path)
    _interrupted_copy(raw, dst)
    st = os.stat(raw)
    with open(raw, 'r+b') as handle:         # rewrite every data extent
        for offset, length in EXTENTS:
            handle.seek(int(offset * MiB))
            handle.write(b'\x5a' * int(length * MiB))
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns))
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert stats.reused == 0
    assert _identical(raw, dst)


def test_replaced_part_file_is_not_trusted(tmp_path, raw):
    dst, part, _sidecar = _paths(tmp_path)
    _interrupted_copy(raw, dst)
    os.rename(part, part + '.old')
    with open(part + '.old', 'rb') as a, open(part, 'wb') as b:
        b.write(a.read())                      # same bytes, new inode
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert stats.reused == 0
    assert _identical(raw, dst)


@pytest.mark.parametrize('text', ['', '{', '{"format": 1}', '[]'])
def test_unreadable_sidecar_starts_over(tmp_path, raw, text):
    dst, _part, sidecar = _paths(tmp_path)
    _interrupted_copy(raw, dst)
    with open(sidecar, 'w') as handle:
        handle.write(text)
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert stats.reused == 0
    assert _identical(raw, dst)


def test_part_without_sidecar_starts_over(tmp_path, raw):
    dst, part, _sidecar = _paths(tmp_path)
    with open(part, 'wb') as handle:          # e.g. an older copier's
        handle.write(b'\xff' * 3 * MiB)
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert stats.reused == 0
    assert _identical(raw, dst)


def test_interrupted_twice(tmp_path, raw):
    dst, _part, _sidecar = _paths(tmp_path)
    first = _interrupted_copy(raw, dst, at=0.3)
    progress, _ = _interrupt_at(0.7)
    second = sparsecopy.CopyStats()
    with pytest.raises(Interrupted):
        sparsecopy.sparse_copy(raw, dst, 'here', progress=progress,
                               chunk_size=CHUNK, stats=second)
    third = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert first.copied + second.copied + third.copied == third.data
    assert _identical(raw, dst)


def test_file_system_error_is_a_disk_error_and_keeps_the_part(tmp_path,
                                                              raw):
    dst, part, _sidecar = _paths(tmp_path)
    _interrupted_copy(raw, dst)
    with pytest.raises(exception.DiskError):
        sparsecopy.sparse_copy(raw, str(tmp_path / 'nowhere' / 'disk'), 'here')
    assert os.path.exists(part)


def _resident(path):
    """Bytes of ``path`` in the page cache, as mincore(2) reports them
    (read from outside the copy: its own mapping of the file)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                          ctypes.c_int, ctypes.c_int, ctypes.c_long)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t,
                             ctypes.c_void_p)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    page = os.sysconf('SC_PAGE_SIZE')
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        try:
            vec = (ctypes.c_ubyte * (-(-size // page)))()
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
            return sum(b & 1 for b in vec) * page
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def _read_all(path):
    with open(path, 'rb') as handle:       # cached, as if read
        while handle.read(8 * MiB):
            pass


def test_copy_leaves_neither_file_in_the_page_cache(tmp_path, raw):
    dst, _part, _sidecar = _paths(tmp_path)
    _read_all(raw)
    data = _data(raw)
    assert _resident(raw) >= data      # the check sees cached pages
    stats = sparsecopy.sparse_copy(raw, dst, 'here', chunk_size=CHUNK)
    assert stats.copied == data
    # Neither file is left in the cache (a page or two may be read back
    # by the file system's own lookups, never a chunk).
    assert _resident(raw) < CHUNK
    assert _resident(dst) < CHUNK
    assert _identical(raw, dst)


def test_a_copy_drops_what_it_committed_as_it_goes(tmp_path, raw):
    """Not only at the end: a copy cut off halfway has dropped both files
    below its last commit (a long copy does not fill the cache first)."""
    dst, part, sidecar = _paths(tmp_path)
    _read_all(raw)
    # The check sees cached pages (the kernel may reclaim a few of them
    # meanwhile: this machine runs DAMON reclaim).
    assert _resident(raw) >= RAW_SIZE - 8 * MiB
    _interrupted_copy(raw, dst)
    committed = _committed(sidecar)
    assert committed >= 40 * MiB       # past half the data: cut late
    # What is left in the cache lies above the commit (the copy's pages
    # between the commit and the cut, and the source's not copied yet).
    assert _resident(raw) <= RAW_SIZE - committed + CHUNK
    assert _resident(part) <= os.path.getsize(part) - committed + CHUNK


# -- through the driver --------------------------------------------------

def test_copy_disk_to_passes_progress_and_drops_a_stale_sidecar(
        src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, {'name': 'f', 'vcpus': 1, 'memory_mb': 64,
                         'root_gb': 1})
    src.power_off(uuid)
    src.stash_for_resize(uuid, 'snap')
    seen = []
    info = src.copy_disk_to(uuid, dst, progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == 1.0
    sidecar = info.path + disk.PART_SUFFIX + sparsecopy.PROGRESS_SUFFIX
    with open(sidecar, 'w') as handle:        # crash after the rename
        handle.write('{}')
    assert src.copy_disk_to(uuid, dst) == info
    assert not os.path.exists(sidecar)
    assert sorted(os.listdir(dst.instance_dir(uuid))) == [
        'disk', 'disk.info', 'libvirt.xml']
