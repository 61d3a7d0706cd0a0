"""The image cache of a host (``_base/``) on real files with real qemu-img:
fetches, blank bases, what is in use and the clean-up, here and on
another machine over ssh."""
import hashlib
import multiprocessing
import os
import posixpath
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import uuid as uuid_lib

import pytest

from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import files
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import sparsecopy
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)

#: The guests' user, owner of the instances paths (as on a real host).
NOBODY = 65534


def _another_machine(machines):
    """A machine over ssh with an instances path ``i`` of the guests'
    user; ``(machine, its files)``."""
    machine = machines()
    machine.run('mkdir -m 700 {0} && chown {1}:{1} {0}'.format(
        machine.path('i'), NOBODY))
    return machine, files.for_host('there', machine.path('i'),
                                   machine.address)


def _sha(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def top():
    # Reachable by the guests' user, who runs qemu-img there.
    path = tempfile.mkdtemp(prefix='rf-cache-')
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _host(top, name):
    path = os.path.join(top, name)
    os.mkdir(path, 0o700)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)
    return files.for_host(name, path)


@pytest.fixture
def cn1(top):
    return _host(top, 'cn1')


@pytest.fixture
def cn2(top):
    return _host(top, 'cn2')


class Store:
    """An image store directory of root's, as imagestore keeps it."""

    def __init__(self, top):
        self.root = os.path.join(top, 'images')
        os.mkdir(self.root, 0o755)
        self.files = files.for_host('image-store', self.root)

    def put(self, name, data):
        # Runs of zeros not written, as the store does: sparse.
        path = os.path.join(self.root, name)
        with open(path, 'wb') as f:
            for at in range(0, len(data), 1 << 20):
                block = data[at:at + (1 << 20)]
                if block.count(0) == len(block):
                    f.seek(len(block), os.SEEK_CUR)
                else:
                    f.write(block)
            f.truncate(len(data))
        return path


@pytest.fixture
def store(top):
    return Store(top)


# Zeros in the middle: a sparse copy skips them.
IMAGE = os.urandom(1 << 20) + bytes(4 << 20) + os.urandom(1 << 20)
SHA = _sha(IMAGE)


def _content(path):
    with open(path, 'rb') as f:
        return f.read()


def _base_listing(host_files):
    return sorted(os.listdir(imagecache.base_dir(host_files)))


def test_fetch_from_the_store(conf, cn1, store):
    src = store.put('img', IMAGE)
    path, copied = imagecache.ensure_image_base(
        cn1, SHA, [(store.files, src)])
    assert path == os.path.join(cn1.instances_path, '_base', SHA)
    assert copied == len(IMAGE) - (4 << 20)         # the zeros: not sent
    assert _content(path) == IMAGE
    assert _base_listing(cn1) == [SHA]               # no temporary left
    st, dst = os.lstat(path), os.lstat(os.path.dirname(path))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(dst.st_mode) == 0o700
    if os.geteuid() == 0:
        assert st.st_uid == dst.st_uid == NOBODY


def test_fetch_from_another_hosts_cache_first(conf, cn1, cn2, store):
    src = store.put('img', IMAGE)
    imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    os.unlink(src)                                   # only cn1 has it now
    path, copied = imagecache.ensure_image_base(
        cn2, SHA, [(cn1, imagecache.base_path(cn1, SHA)),
                   (store.files, src)])
    assert copied > 0 and _content(path) == IMAGE


def test_a_cached_base_costs_nothing(conf, cn1, store):
    src = store.put('img', IMAGE)
    path, _ = imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    before = os.lstat(path)
    os.unlink(src)                        # no source needed any more
    assert imagecache.ensure_image_base(
        cn1, SHA, [(store.files, src)]) == (path, 0)
    after = os.lstat(path)
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)


def test_a_corrupt_cached_base_is_replaced(conf, cn1, store):
    src = store.put('img', IMAGE)
    path, _ = imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    with open(path, 'r+b') as f:
        f.write(b'evil')
    path, copied = imagecache.ensure_image_base(
        cn1, SHA, [(store.files, src)])
    assert copied > 0 and _content(path) == IMAGE
    assert _base_listing(cn1) == [SHA]


def _count_hashes(monkeypatch, host_files):
    """The paths host_files.sha256 is asked for, in order."""
    hashed = []
    real = host_files.sha256

    def spy(path, tick=None):
        hashed.append(path)
        return real(path, tick=tick)
    monkeypatch.setattr(host_files, 'sha256', spy)
    return hashed


def test_a_cached_base_is_hashed_once_per_process(conf, cn1, store,
                                                  monkeypatch):
    src = store.put('img', IMAGE)
    hashed = _count_hashes(monkeypatch, cn1)
    path, _ = imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    assert path not in hashed          # its fetch's copy was hashed
    for _ in range(3):                 # then the moves onto the host
        assert imagecache.ensure_image_base(
            cn1, SHA, [(store.files, src)]) == (path, 0)
    assert path not in hashed
    imagecache._HASHED.clear()         # another process: hashes it once
    for _ in range(2):
        assert imagecache.ensure_image_base(
            cn1, SHA, [(store.files, src)]) == (path, 0)
    assert hashed.count(path) == 1
    # Still touched every time: a clean sees a young base.
    assert time.time() - os.lstat(path).st_mtime < 600


def test_a_base_changed_with_its_size_and_times_kept_is_hashed_again(
        conf, cn1, store, monkeypatch):
    """Its owner wrote into it and set its times back (os.utime): the
    ctime moved all the same, so it is hashed, found wrong, replaced."""
    src = store.put('img', IMAGE)
    path, _ = imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    hashed = _count_hashes(monkeypatch, cn1)
    before = os.lstat(path)
    with open(path, 'r+b') as f:
        f.write(b'evil')
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.lstat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino, before.st_size, before.st_mtime_ns)
    path, copied = imagecache.ensure_image_base(
        cn1, SHA, [(store.files, src)])
    assert hashed[0] == path
    assert copied > 0 and _content(path) == IMAGE


@pytest.mark.parametrize('where', ['local', 'ssh'])
def test_a_hash_ticks_as_it_reads(conf, cn1, machines, where):
    """A long hash is progress for the copy's stall deadline (and a beat
    of the fetch lock held): tick() after every 64 MiB read, here and over
    ssh (where sha256sum's read offset is sampled while it runs)."""
    if where == 'local':
        host_files = cn1
        path = os.path.join(cn1.instances_path, 'big')
        with open(path, 'wb') as f:
            f.truncate(130 << 20)          # holes read as zeros: quick
    else:
        machine, host_files = _another_machine(machines)
        path = posixpath.join(machine.path('i'), 'big')
        machine.run('truncate -s 130M {0} && chown {1}:{1} {0}'.format(
            path, NOBODY))
    ticks = []
    assert host_files.sha256(path, tick=lambda: ticks.append(1)) == _sha(
        bytes(130 << 20))
    assert len(ticks) == 2
    assert host_files.sha256(path) == _sha(bytes(130 << 20))
    missing = path + '.missing'
    assert host_files.sha256(missing, tick=lambda: ticks.append(1)) is None
    assert len(ticks) == 2
    if where == 'ssh':
        machine.run('ln -s /etc/passwd {0}'.format(missing))
        with pytest.raises(exception.DiskError, match='refused: '):
            host_files.sha256(missing, tick=lambda: ticks.append(1))


def test_a_wrong_or_missing_source_is_skipped(conf, cn1, store):
    wrong = store.put('wrong', os.urandom(1 << 20))
    good = store.put('img', IMAGE)
    missing = os.path.join(store.root, 'missing')
    path, _ = imagecache.ensure_image_base(
        cn1, SHA, [(store.files, missing), (store.files, wrong),
                   (store.files, good)])
    assert _content(path) == IMAGE
    assert _base_listing(cn1) == [SHA]


def test_no_usable_source(conf, cn1, store):
    wrong = store.put('wrong', os.urandom(4096))
    missing = os.path.join(store.root, 'missing')
    with pytest.raises(exception.ImageUnavailable) as info:
        imagecache.ensure_image_base(
            cn1, SHA, [(store.files, missing), (store.files, wrong)])
    message = str(info.value)
    assert '\n' not in message
    assert SHA in message and 'host cn1' in message
    assert 'missing' in message and 'wrong' in message
    assert _base_listing(cn1) == []              # nothing left behind


def _fetch(root, src_root, src):
    from resize_flows import conf as rf_conf
    rf_conf.register_opts(rf_conf.CONF)
    rf_conf.CONF([], project='resize-flows', default_config_files=[],
                 default_config_dirs=[])
    imagecache.ensure_image_base(files.for_host('cn1', root), SHA, [
        (files.for_host('image-store', src_root), src)])


def test_two_fetches_at_once_end_with_one_good_file(conf, cn1, store):
    src = store.put('img', IMAGE)
    ctx = multiprocessing.get_context('fork')
    procs = [ctx.Process(target=_fetch, args=(
        cn1.instances_path, store.root, src)) for _ in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert _base_listing(cn1) == [SHA]
    assert _content(imagecache.base_path(cn1, SHA)) == IMAGE


def _crash_mid_copy(root, src_root, src):
    from resize_flows import conf as rf_conf
    rf_conf.register_opts(rf_conf.CONF)
    rf_conf.CONF([], project='resize-flows', default_config_files=[],
                 default_config_dirs=[])

    def progress(fraction):
        # Past half the data: several chunks committed (a crash loses
        # at most two).
        if 0.5 <= fraction < 1:
            os.kill(os.getpid(), signal.SIGKILL)
    imagecache.ensure_image_base(files.for_host('cn1', root), BIG_SHA, [
        (files.for_host('image-store', src_root), src)], progress=progress)


BIG = os.urandom(48 << 20)
BIG_SHA = _sha(BIG)
#: Bytes of data between two commits of a copy's progress, here (and in
#: the forked fetch, which inherits it): 12 of them in BIG.
CHUNK = 4 * disk.MiB


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK', CHUNK)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', CHUNK)


def _crash_a_fetch(host_files, store):
    """A fetch of BIG killed (SIGKILL) past half its copy; the source."""
    src = store.put('big', BIG)
    proc = multiprocessing.get_context('fork').Process(
        target=_crash_mid_copy,
        args=(host_files.instances_path, store.root, src))
    proc.start()
    proc.join()
    assert proc.exitcode == -signal.SIGKILL
    return src


def test_a_crash_mid_fetch_leaves_no_base(conf, cn1, store, small_chunks):
    _crash_a_fetch(cn1, store)
    left = _base_listing(cn1)
    assert BIG_SHA not in left
    # The partial copy under the fixed name, and the lock file.
    assert '.%s.fetch.part' % BIG_SHA in left
    assert '.%s.lock' % BIG_SHA in left
    assert all(imagecache.is_temp_name(n) for n in left)
    # A young temporary may be a fetch still going: kept.
    assert imagecache.clean(cn1) == []
    assert _base_listing(cn1) == left
    # Once old enough, the crashed fetch's files go (its lock with it:
    # nothing holds it since the crash).
    removed = imagecache.clean(cn1, min_age=0)
    assert sorted(n for n, _ in removed) == left
    assert _base_listing(cn1) == []


def test_a_fetch_cut_off_by_a_crash_is_resumed(conf, cn1, store,
                                               small_chunks):
    src = _crash_a_fetch(cn1, store)
    path, copied = imagecache.ensure_image_base(
        cn1, BIG_SHA, [(store.files, src)])
    # What was committed before the crash was not copied again.
    assert 0 < copied <= len(BIG) - 2 * CHUNK
    assert _content(path) == BIG and cn1.sha256(path) == BIG_SHA
    assert _base_listing(cn1) == [BIG_SHA]           # nothing else left


def test_a_partial_fetch_of_wrong_data_is_dropped(conf, cn1, store,
                                                  small_chunks):
    """A source changed since a crash cut its fetch off (its data no
    longer the base's): copied again, found wrong, and the copy removed
    with what the crash left."""
    src = _crash_a_fetch(cn1, store)
    with open(src, 'r+b') as f:
        f.seek(len(BIG) - 1)
        f.write(b'x')                     # the end, not yet copied
    with pytest.raises(exception.ImageUnavailable, match='has sha256'):
        imagecache.ensure_image_base(cn1, BIG_SHA, [(store.files, src)])
    assert _base_listing(cn1) == []


def _lock_name(sha):
    return '.%s.lock' % sha


@pytest.mark.parametrize('kind', ['symlink', 'other uid', 'hardlink'])
def test_a_lock_file_planted_is_refused(conf, cn1, store, top, kind):
    src = store.put('img', IMAGE)
    secret = os.path.join(top, 'secret')
    with open(secret, 'wb') as f:
        f.write(b'root only')
    os.chmod(secret, 0o600)
    cn1.makedir(imagecache.base_dir(cn1))
    lock = imagecache.base_path(cn1, _lock_name(SHA))
    if kind == 'symlink':
        os.symlink(secret, lock)
    elif kind == 'hardlink':
        os.link(secret, lock)
    else:
        with open(lock, 'wb'):
            pass
        os.chown(lock, 4321, 4321)
    before = os.lstat(secret)
    with pytest.raises(exception.DiskError, match='refused: ') as info:
        imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    assert '\n' not in str(info.value)
    assert _content(secret) == b'root only'
    after = os.lstat(secret)
    assert (after.st_mtime_ns, after.st_uid) == (before.st_mtime_ns,
                                                 before.st_uid)
    assert os.path.lexists(lock)
    assert SHA not in _base_listing(cn1)


def _fetch_and_tell(root, src_root, src, queue):
    from resize_flows import conf as rf_conf
    rf_conf.register_opts(rf_conf.CONF)
    rf_conf.CONF([], project='resize-flows', default_config_files=[],
                 default_config_dirs=[])
    queue.put(imagecache.ensure_image_base(
        files.for_host('cn1', root), SHA,
        [(files.for_host('image-store', src_root), src)]))


def _opened_by(pid, path):
    folder = '/proc/%d/fd' % pid
    for fd in os.listdir(folder):
        try:
            if os.readlink(os.path.join(folder, fd)) == path:
                return True
        except FileNotFoundError:
            continue
    return False


def test_a_fetch_waits_for_the_lock_then_finds_the_base(conf, cn1, store):
    src = store.put('img', IMAGE)
    cn1.makedir(imagecache.base_dir(cn1))
    lock = imagecache.base_path(cn1, _lock_name(SHA))
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    # Another process holds the lock (flock(1), as over ssh); a fetch
    # forked from this process inherits no descriptor of the lock file.
    # (It is released by a kill: flock -o keeps it in flock itself.)
    holder = subprocess.Popen(['flock', '-o', lock, 'sh', '-c',
                               'echo locked; exec sleep 600'],
                              stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert holder.stdout.readline() == b'locked\n'
        proc = ctx.Process(target=_fetch_and_tell, args=(
            cn1.instances_path, store.root, src, queue))
        proc.start()
        # The fetch opened the lock file (after it found no base): it
        # waits for the holder. (The bound is only against a hang.)
        for _ in range(600):
            if _opened_by(proc.pid, lock) or not proc.is_alive():
                break
            proc.join(0.1)
        assert _opened_by(proc.pid, lock)
        # Meanwhile, the fetch that holds the lock makes the base.
        _put_base(cn1, SHA, IMAGE)
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
        holder.stdout.close()
    path, copied = queue.get(timeout=300)
    proc.join()
    assert proc.exitcode == 0
    assert (path, copied) == (imagecache.base_path(cn1, SHA), 0)
    assert _content(path) == IMAGE
    assert _base_listing(cn1) == [SHA]           # its lock file removed


def _put_base(host_files, sha, data):
    """The base as a fetch leaves it: the owner's, 0600."""
    path = imagecache.base_path(host_files, sha)
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, 0o600)
    if os.geteuid() == 0:
        os.chown(path, NOBODY, NOBODY)


def test_a_lock_held_too_long_fetches_under_a_name_of_its_own(
        conf, cn1, store):
    src = store.put('img', IMAGE)
    cn1.makedir(imagecache.base_dir(cn1))
    lock = imagecache.base_path(cn1, _lock_name(SHA))
    conf.set_override('fetch_lock_timeout', 0, group='image_cache')
    try:
        with cn1.fetch_lock(lock, 0) as held:
            assert held
            # Held by a stuck fetch: a second one does not wait.
            path, copied = imagecache.ensure_image_base(
                cn1, SHA, [(store.files, src)])
            assert copied == len(IMAGE) - (4 << 20)
            assert _content(path) == IMAGE
            # Its own temporary is gone; the lock is the holder's.
            assert _base_listing(cn1) == sorted([SHA, _lock_name(SHA)])
    finally:
        conf.clear_override('fetch_lock_timeout', group='image_cache')
    assert conf.image_cache.fetch_lock_timeout == 600


def test_a_stalled_fetch_is_passed_by(conf, cn1, store):
    """The fetch that holds the lock stalled (its process alive but
    stopped: the lock file goes untouched). Another fetch waits
    copy_stall_timeout for a beat, not fetch_lock_timeout, then fetches
    under a name of its own."""
    src = store.put('img', IMAGE)
    cn1.makedir(imagecache.base_dir(cn1))
    lock = imagecache.base_path(cn1, _lock_name(SHA))
    conf.set_override('copy_stall_timeout', 1, group='flows')
    assert conf.image_cache.fetch_lock_timeout == 600
    with cn1.fetch_lock(lock, 0, stale=1) as held:
        assert held
        with cn1.fetch_lock(lock, 600, stale=1) as other:
            assert not other and other.stale
        path, copied = imagecache.ensure_image_base(
            cn1, SHA, [(store.files, src)])
        assert copied == len(IMAGE) - (4 << 20)
        assert _content(path) == IMAGE
        assert _base_listing(cn1) == sorted([SHA, _lock_name(SHA)])


def _beat_for(held, seconds):
    """Beat the lock ``held`` (as a fetch that moves) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        held.beat()
        time.sleep(0.05)


def test_a_fetch_that_beats_is_waited_for(conf, cn1, store):
    """The fetch that holds the lock beats as it moves: another fetch
    waits for it past copy_stall_timeout (three times over here), then
    finds the base it made and copies nothing."""
    src = store.put('img', IMAGE)
    cn1.makedir(imagecache.base_dir(cn1))
    lock = imagecache.base_path(cn1, _lock_name(SHA))
    conf.set_override('copy_stall_timeout', 2, group='flows')
    got = []
    waiter = threading.Thread(target=lambda: got.append(
        imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])))
    with cn1.fetch_lock(lock, 0, stale=2) as held:
        assert held
        waiter.start()
        _beat_for(held, 6)
        _put_base(cn1, SHA, IMAGE)
    assert not held         # released: a beat now touches nothing
    waiter.join(300)
    assert got == [(imagecache.base_path(cn1, SHA), 0)]
    assert _base_listing(cn1) == [SHA]


def test_clean_leaves_a_lock_that_is_held(conf, cn1):
    """A held lock is a fetch going on: neither it nor the partial copy
    it resumes is removed, however old."""
    cn1.makedir(imagecache.base_dir(cn1))
    lock = imagecache.base_path(cn1, _lock_name(SHA))
    partial = '.%s.fetch.part' % SHA
    with open(imagecache.base_path(cn1, partial), 'wb') as f:
        f.write(b'a partial copy')
    with cn1.fetch_lock(lock, 0) as held:
        assert held
        assert imagecache.clean(cn1, min_age=0) == []
        assert _base_listing(cn1) == sorted([_lock_name(SHA), partial])
    assert sorted(n for n, _ in imagecache.clean(cn1, min_age=0)) == sorted(
        [_lock_name(SHA), partial])
    assert _base_listing(cn1) == []


@pytest.mark.parametrize('kind', ['symlink', 'hardlink'])
def test_a_link_planted_at_the_base_is_refused(conf, cn1, store, top,
                                               kind):
    src = store.put('img', IMAGE)
    secret = os.path.join(top, 'secret')
    with open(secret, 'wb') as f:
        f.write(IMAGE)                       # even with the right content
    os.mkdir(imagecache.base_dir(cn1))
    os.chown(imagecache.base_dir(cn1), NOBODY, NOBODY)
    base = imagecache.base_path(cn1, SHA)
    (os.symlink if kind == 'symlink' else os.link)(secret, base)
    with pytest.raises(exception.DiskError, match='refused: '):
        imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    assert _content(secret) == IMAGE
    assert os.lstat(secret).st_uid == 0
    assert (os.path.islink(base)) == (kind == 'symlink')
    # Nor does the clean-up remove it or what it points to.
    assert imagecache.clean(cn1, min_age=0) == []
    assert os.path.lexists(base) and os.path.exists(secret)


def test_a_base_directory_that_is_a_link_is_refused(conf, cn1, store, top):
    src = store.put('img', IMAGE)
    elsewhere = os.path.join(top, 'elsewhere')
    os.mkdir(elsewhere)
    os.symlink(elsewhere, imagecache.base_dir(cn1))
    with pytest.raises(exception.DiskError, match='refused: '):
        imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    assert os.listdir(elsewhere) == []
    with pytest.raises(exception.DiskError, match='refused: '):
        imagecache.clean(cn1, min_age=0)


def _instance(host_files, base, suffix=''):
    """An instance directory whose disk is an overlay on ``base``."""
    entry = str(uuid_lib.uuid4()) + suffix
    folder = os.path.join(host_files.instances_path, entry)
    host_files.makedir(folder)
    path = os.path.join(folder, layout.DISK)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base,
                    '-F', 'raw', path], check=True)
    os.chmod(path, 0o600)
    os.chown(path, NOBODY, NOBODY)
    return entry


def test_clean_removes_only_what_nothing_uses(conf, cn1, store):
    used_src = store.put('img', IMAGE)
    other = os.urandom(1 << 20)
    other_src = store.put('other', other)
    used, _ = imagecache.ensure_image_base(cn1, SHA,
                                           [(store.files, used_src)])
    imagecache.ensure_image_base(cn1, _sha(other),
                                 [(store.files, other_src)])
    swap = imagecache.ensure_blank_base(cn1, 'swap', 8)
    entry = _instance(cn1, used, '_resize')
    local = _instance(cn1, swap)
    # Not a name of ours: never removed.
    stranger = os.path.join(imagecache.base_dir(cn1), 'notes.txt')
    with open(stranger, 'w') as f:
        f.write('x')
    assert imagecache.bases_in_use(cn1) == {
        SHA: [entry], layout.swap_base_name(8): [local]}
    # Young: kept, by default.
    assert imagecache.clean(cn1) == []
    removed = imagecache.clean(cn1, min_age=0)
    assert [n for n, _ in removed] == [_sha(other)]
    assert removed[0][1] > 0
    assert _base_listing(cn1) == sorted(
        [SHA, layout.swap_base_name(8), 'notes.txt'])


def test_the_minimum_age_is_an_option(conf, cn1, store):
    src = store.put('img', IMAGE)
    imagecache.ensure_image_base(cn1, SHA, [(store.files, src)])
    assert conf.image_cache.remove_unused_minimum_age_seconds == 3600
    conf.set_override('remove_unused_minimum_age_seconds', 0,
                      group='image_cache')
    try:
        assert [n for n, _ in imagecache.clean(cn1)] == [SHA]
    finally:
        conf.clear_override('remove_unused_minimum_age_seconds',
                            group='image_cache')


def _blkid(path):
    return subprocess.run(['blkid', '-p', '-o', 'value', '-s', 'TYPE',
                           path], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_blank_bases_are_the_same_on_every_host(conf, cn1, cn2):
    one = imagecache.ensure_blank_base(cn1, 'ephemeral', 1)
    two = imagecache.ensure_blank_base(cn2, 'ephemeral', 1)
    assert os.path.basename(one) == layout.ephemeral_base_name(1)
    assert os.path.getsize(one) == disk.GiB
    assert os.stat(one).st_blocks * 512 < disk.GiB // 8      # sparse
    assert _blkid(one) == 'ext4'
    subprocess.run(['cmp', one, two], check=True)
    swap = imagecache.ensure_blank_base(cn1, 'swap', 16)
    assert os.path.getsize(swap) == 16 * disk.MiB
    assert _blkid(swap) == 'swap'
    # Made once: a second call keeps the file.
    ino = os.lstat(one).st_ino
    assert imagecache.ensure_blank_base(cn1, 'ephemeral', 1) == one
    assert os.lstat(one).st_ino == ino
    assert _base_listing(cn1) == sorted([layout.ephemeral_base_name(1),
                                         layout.swap_base_name(16)])
    with pytest.raises(exception.InvalidInput):
        imagecache.ensure_blank_base(cn1, 'tmpfs', 1)


# -- another machine, over ssh ----------------------------------------------

def test_the_cache_on_another_machine(conf, machines, cn1, store,
                                      monkeypatch):
    machine, there = _another_machine(machines)
    src = store.put('img', IMAGE)
    # From here's store, then from the other machine's cache to here.
    path, copied = imagecache.ensure_image_base(there, SHA,
                                                [(store.files, src)])
    assert copied > 0 and there.sha256(path) == SHA
    hashed = _count_hashes(monkeypatch, there)
    assert imagecache.ensure_image_base(
        there, SHA, [(store.files, src)]) == (path, 0)
    assert hashed == []                # known: its identity over ssh
    machine.run('printf evil | dd of={0} conv=notrunc status=none'.format(
        path))
    path, copied = imagecache.ensure_image_base(
        there, SHA, [(store.files, src)])
    assert hashed[0] == path and copied > 0      # changed: hashed again
    assert there.sha256(path) == SHA
    os.unlink(src)
    here, _ = imagecache.ensure_image_base(cn1, SHA, [(there, path)])
    assert _content(here) == IMAGE
    swap = imagecache.ensure_blank_base(there, 'swap', 8)
    entry = str(uuid_lib.uuid4())
    folder = machine.path('i', entry)
    machine.run('mkdir -m 700 {0} && qemu-img create -q -f qcow2 -b {1} '
                '-F raw {0}/disk && chown -R {2}:{2} {0}'.format(
                    folder, swap, NOBODY))
    assert imagecache.bases_in_use(there) == {
        layout.swap_base_name(8): [entry]}
    machine.run('ln -s /etc/passwd {0}/{1}'.format(
        imagecache.base_dir(there), 'f' * 64))
    assert imagecache.clean(there) == []                 # young
    # The same ext4 base as one made here.
    ext4 = imagecache.ensure_blank_base(there, 'ephemeral', 1)
    assert there.sha256(ext4) == cn1.sha256(
        imagecache.ensure_blank_base(cn1, 'ephemeral', 1))
    assert sorted(n for n, _ in imagecache.clean(there, min_age=0)) == \
        sorted([SHA, layout.ephemeral_base_name(1)])
    assert sorted(there.listdir(imagecache.base_dir(there))) == [
        'f' * 64, layout.swap_base_name(8)]
    with pytest.raises(exception.DiskError, match='refused: '):
        imagecache.ensure_image_base(there, 'f' * 64, [(cn1, here)])


class CutOff(Exception):
    pass


def test_a_fetch_to_another_machine_cut_off_is_resumed(conf, machines,
                                                       store):
    machine, there = _another_machine(machines)
    data = os.urandom(8 << 20)
    sha = _sha(data)
    src = store.put('img', data)
    # rsync at 2 MB/s: the copy takes seconds, and is stopped at 30 %.
    conf.set_override('rsync_options', ['--bwlimit=2000'], group='remote')

    def progress(fraction):
        if fraction >= 0.3:
            raise CutOff()
    with pytest.raises(CutOff):
        imagecache.ensure_image_base(there, sha, [(store.files, src)],
                                     progress=progress)
    folder = imagecache.base_dir(there)
    partial = posixpath.join(folder, files.RSYNC_PARTIAL_DIR,
                             '.%s.fetch' % sha)
    # The receiving rsync saves its part when it sees the sender go, a
    # moment after it was stopped (the bound is only against a hang).
    for _ in range(100):
        if there.getsize(partial):
            break
        time.sleep(0.1)
    assert there.getsize(partial) > 0
    # Its lock went with it.
    assert there.listdir(folder) == [files.RSYNC_PARTIAL_DIR]
    conf.clear_override('rsync_options', group='remote')
    path, copied = imagecache.ensure_image_base(there, sha,
                                                [(store.files, src)])
    assert 0 < copied <= len(data) - (1 << 20)       # the part: not sent
    assert there.sha256(path) == sha
    assert there.listdir(folder) == [sha]


def test_the_lock_on_another_machine(conf, machines, store):
    machine, there = _another_machine(machines)
    src = store.put('img', IMAGE)
    there.makedir(imagecache.base_dir(there))
    folder = imagecache.base_dir(there)
    lock = imagecache.base_path(there, _lock_name(SHA))
    conf.set_override('fetch_lock_timeout', 0, group='image_cache')
    with there.fetch_lock(lock, 0) as held:
        assert held
        # Held: a second holder does not get it, here or there.
        with there.fetch_lock(lock, 0) as again:
            assert not again
        assert imagecache.clean(there, min_age=0) == []
        path, copied = imagecache.ensure_image_base(
            there, SHA, [(store.files, src)])
        assert copied > 0 and there.sha256(path) == SHA
        assert sorted(there.listdir(folder)) == sorted([SHA,
                                                        _lock_name(SHA)])
    # Released when its holder was told so.
    with there.fetch_lock(lock, 0) as held:
        assert held
    there.remove_file(path)
    assert [n for n, _ in imagecache.clean(there, min_age=0)] == [
        _lock_name(SHA)]
    machine.run('ln -s /etc/passwd {0}'.format(lock))
    with pytest.raises(exception.DiskError, match='refused: ') as info:
        imagecache.ensure_image_base(there, SHA, [(store.files, src)])
    assert '\n' not in str(info.value)
    assert there.listdir(folder) == [_lock_name(SHA)]


def test_a_stalled_lock_holder_on_another_machine(conf, machines, store):
    """Over ssh as here: a holder that does not beat is passed by after
    the stale time; one that beats is waited for."""
    machine, there = _another_machine(machines)
    src = store.put('img', IMAGE)
    there.makedir(imagecache.base_dir(there))
    lock = imagecache.base_path(there, _lock_name(SHA))
    conf.set_override('copy_stall_timeout', 1, group='flows')
    with there.fetch_lock(lock, 0, stale=1) as held:
        assert held
        with there.fetch_lock(lock, 600, stale=1) as other:
            assert not other and other.stale
        path, copied = imagecache.ensure_image_base(
            there, SHA, [(store.files, src)])
        assert copied > 0 and there.sha256(path) == SHA
    got = []

    def wait():
        with there.fetch_lock(lock, 600, stale=2) as other:
            got.append((bool(other), other.stale))
    waiter = threading.Thread(target=wait)
    with there.fetch_lock(lock, 0, stale=2) as held:
        assert held
        waiter.start()
        _beat_for(held, 6)
    waiter.join(300)
    assert got == [(True, False)]


def _two_partial_copies(run, folder):
    partial = posixpath.join(folder, files.RSYNC_PARTIAL_DIR)
    run('mkdir -p -m 700 {0} && echo a > {0}/a && echo b > {0}/b && '
        'chown -R {1}:{1} {2}'.format(partial, NOBODY, folder))
    return partial


@pytest.mark.parametrize('where', ['local', 'ssh'])
def test_a_finished_rsync_keeps_another_files_partial_copy(conf, machines,
                                                           top, where):
    """Fetches into one directory share RSYNC_PARTIAL_DIR: the one that
    ends removes its own partial copy only, and the directory once it is
    empty, so another fetch cut off there still resumes."""
    if where == 'local':
        host_files = _host(top, 'cn1')
        folder = os.path.join(top, 'cn1', 'f')

        def run(script):
            subprocess.run(['sh', '-c', script], check=True)
    else:
        machine, host_files = _another_machine(machines)
        folder = machine.path('i', 'f')
        run = machine.run
    partial = _two_partial_copies(run, folder)
    host_files.remove_rsync_temp(posixpath.join(folder, 'a'), partial=True)
    assert host_files.listdir(partial) == ['b']
    host_files.remove_rsync_temp(posixpath.join(folder, 'b'), partial=True)
    assert host_files.listdir(folder) == []
