"""The image cache of a host: ``<instances_path>/_base/``.

Nova's libvirt driver keeps on each host one copy of every image its
servers boot from, the *base*, and makes each server's root disk a qcow2
overlay on it; the blank ephemeral and swap disks are overlays on blank
bases made on the host. Here:

- :func:`ensure_image_base` puts ``_base/<sha256>`` on a host (its files,
  :mod:`.files`), copied from the first usable source (another host's
  cache, the image store) by :func:`.transfer.copy_disk`, under a
  temporary name, renamed only once its sha256 is right;
- :func:`ensure_blank_base` makes ``_base/ephemeral_<GB>_ext4`` and
  ``_base/swap_<MB>`` on the host itself, the same bytes every time
  (fixed uuid and time), so a second one made at once is the same file;
- :func:`bases_in_use` reads the backing file of every disk of every
  instance directory, and :func:`clean` removes the bases nothing uses.

A fetch holds the host's lock of its base, ``_base/.<base>.lock``
(:meth:`.fileops.LocalOps.fetch_lock`: ``flock``, released when its
process dies, waiting at most ``[image_cache]/fetch_lock_timeout``
seconds), and copies under the fixed name ``.<base>.fetch``: a fetch cut
off by a crash or an error leaves its partial copy there (the copy's
``.part`` and its progress sidecar, or rsync's ``.rsync-partial/``) and
the next fetch continues it. A fetch that could not get the lock (its
holder is stuck) copies under a name of its own, ``.<base>.<16
hex>.fetch``, removed afterwards: correct, but not resumable.

The names are :mod:`.layout`'s. A fetch's temporary files are those
(and what the copy adds to their name: ``.part`` and its progress
sidecar, rsync's ``.<name>.XXXXXX``); a blank base's ``.<base>.<16
hex>.blank``; :func:`clean` removes those and the lock files once they
are older than ``[image_cache]/remove_unused_minimum_age_seconds`` (the
fetch crashed), never sooner, and never while a fetch holds the lock of
their base (it is resuming them).

A cached base is hashed once per process, not on every move: the
process remembers the identity of each base it hashed (device, inode,
size, mtime and ctime: :meth:`.fileops.LocalOps.identity`) and takes a
base of the same identity as checked. Any change to the file (written,
replaced, renamed, its times or mode set) moves its ctime, which its
owner cannot set back, and the next move hashes it again. Bytes read for
a hash count as progress for the disk copy's stall deadline and beat the
fetch lock held (here and over ssh).
"""
import contextlib
import logging
import os
import posixpath
import re
import secrets
import threading
import uuid as uuidlib

from resize_flows.conf import CONF
from resize_flows import deadlines
from resize_flows import exception
from resize_flows.testing import faults
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import transfer

LOG = logging.getLogger(__name__)

_TEMP = re.compile(r'^\.{1,2}(?P<base>[^.]+)(?P<token>\.[0-9a-f]{16})?'
                   r'\.(?P<kind>fetch|blank|lock)(?:\..*)?$', re.DOTALL)
_INSTANCE_DIR = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-'
                           r'[0-9a-f]{4}-[0-9a-f]{12}(?:_resize|_revert)?$')
# The blank bases are made at this time and with uuids of their name, so
# that two made of one size are the same bytes.
_FAKE_TIME = '1577836800'
_NAMESPACE = uuidlib.UUID('8d1f3c0e-6a55-4a8e-9a53-2c7f3b3f5e10')
# How many times the instance directories are read again when they
# changed while their disks were read (a move renamed one meanwhile).
_STABLE_TRIES = 5

# {(host, path): (identity, sha256)} of the bases this process hashed.
_HASHED = {}
_HASHED_LOCK = threading.Lock()


def _remember(files, path, identity, sha256):
    with _HASHED_LOCK:
        if identity is None:
            _HASHED.pop((files.host, path), None)
        else:
            _HASHED[(files.host, path)] = (identity, sha256)


def _known(files, path, identity, sha256):
    """Whether this process hashed ``path`` as ``sha256`` when it had
    ``identity`` (not None)."""
    with _HASHED_LOCK:
        return _HASHED.get((files.host, path)) == (identity, sha256)


def _hashes_to(files, path, sha256, identity=None, beat=None):
    """Whether the file ``path`` of ``files`` has that sha256: known from
    an earlier hash of the same file (``identity``: the one it had, when
    the caller took it before a change of its own), or hashed now."""
    now = files.identity(path)
    if now is None:
        return False
    if _known(files, path, identity or now, sha256):
        _remember(files, path, now, sha256)
        return True
    got = files.sha256(path, tick=_ticking(beat))
    if got == sha256 and files.identity(path) == now:
        _remember(files, path, now, sha256)
    return got == sha256


def _cached(files, final, sha256, beat=None):
    """Whether the base ``final`` is cached with the right sha256; it is
    touched first, so that a clean coming after this check sees a young
    file. Only the touch may have changed it since an earlier hash: the
    same file (device, inode, size) whose identity before the touch is
    the one remembered. ``beat()`` as a hash moves."""
    before = files.identity(final)
    files.touch(final)
    if before is not None:
        after = files.identity(final)
        if after is None or after[:3] != before[:3]:
            before = None
    return _hashes_to(files, final, sha256, identity=before, beat=beat)


def _ticking(beat):
    """What a hash calls as it moves: the task's deadline, and ``beat``."""
    if beat is None:
        return deadlines.moved

    def tick():
        deadlines.moved()
        beat()
    return tick


def _beating(progress, beat):
    """``progress`` of a copy that also beats the lock held when bytes
    moved (the copy also calls it when none did)."""
    last = [None]

    def moved(fraction):
        if last[0] is None or fraction > last[0]:
            last[0] = fraction
            beat()
        if progress is not None:
            progress(fraction)
    return moved


def _join(files):
    return posixpath.join if files.machine is not None else os.path.join


def base_dir(files):
    """``<instances_path>/_base`` of the host of ``files``."""
    return _join(files)(files.instances_path, layout.BASE_DIR)


def base_path(files, name):
    """``<instances_path>/_base/<name>`` (``name`` from :mod:`.layout`)."""
    return _join(files)(base_dir(files), name)


def is_temp_name(name):
    """Whether ``name`` is a temporary file of a fetch or a blank base,
    or the lock file of a fetch."""
    match = _TEMP.match(name)
    return bool(match) and layout.is_base_name(match.group('base'))


def _is_lock_name(name):
    match = _TEMP.match(name)
    return bool(match) and name == '.%s.lock' % match.group('base')


def _temp_path(files, name, kind):
    return base_path(files, '.%s.%s.%s' % (name, secrets.token_hex(8), kind))


def _lock_path(files, name):
    return base_path(files, '.%s.lock' % name)


def _ensure_base_dir(files):
    """Make ``_base`` (0700, the owner's, as every directory there)."""
    if not files.has_root():
        raise exception.DiskError(
            host=files.host, reason='no instances path %s'
            % files.instances_path)
    files.makedir(base_dir(files))


def _drop_temp(files, tmp, what=('file', 'part', 'sidecar', 'rsync')):
    """Remove what a fetch into ``tmp`` may have left (never fails)."""
    removals = {'file': lambda: files.remove_file(tmp),
                'lock': lambda: files.remove_file(tmp),
                'part': lambda: files.remove_file(tmp + disk.PART_SUFFIX),
                'sidecar': lambda: files.remove_copy_sidecar(tmp),
                'rsync': lambda: files.remove_rsync_temp(tmp)}
    for remove in (removals[w] for w in what):
        try:
            remove()
        except exception.ResizeFlowsException as exc:
            LOG.warning('could not remove the temporary files of %s on '
                        '%s: %s', tmp, files.host, exc)


def ensure_image_base(files, sha256, sources, progress=None):
    """Make sure the host of ``files`` holds ``_base/<sha256>`` with that
    content; ``(path, bytes copied)``.

    A cached file whose sha256 matches is used as it is (0 bytes; it is
    touched, so that :func:`clean` leaves it to the server about to use
    it); a file whose sha256 does not match is replaced. Otherwise, under
    the base's lock (see the module; a fetch that waited for it looks at
    the base again: another fetch may have made it), the base is copied
    from the first usable of ``sources``, ``[(src_files, src_path)]`` (a
    missing or wrong source is skipped), into ``.<base>.fetch``, which
    continues what a fetch cut off left there, and renamed only once its
    sha256 was checked: two fetches at once end with one good file, a
    crash leaves no file under the final name. ``ImageUnavailable`` when
    no source gave it; a link or a file not of its own in ``_base`` is
    refused (``DiskError``)."""
    name = layout.image_base_name(sha256)
    final = base_path(files, name)
    _ensure_base_dir(files)
    if _cached(files, final, sha256):
        return final, 0
    timeout = CONF.image_cache.fetch_lock_timeout
    stale = CONF.flows.copy_stall_timeout
    lock = _lock_path(files, name)
    with contextlib.ExitStack() as stack:
        # Waiting for another fetch is not a stalled copy (bounded by
        # the timeout above, and by that fetch's beats).
        with deadlines.waiting():
            held = stack.enter_context(files.fetch_lock(lock, timeout,
                                                        stale=stale))
        if not held:
            why = ('the fetch that holds its lock has not moved for %d '
                   'seconds (its process is stalled)' % stale if held.stale
                   else 'the lock of its fetch was held for %d seconds'
                   % timeout)
            LOG.warning('image base %s on %s: %s; fetching it under a name '
                        'of its own (not resumable)', sha256, files.host, why)
            return _fetch(files, sha256, sources, progress, None)
        faults.window('fetch-locked')
        try:
            if _cached(files, final, sha256, beat=held.beat):
                return final, 0             # made while we waited
            return _fetch(files, sha256, sources, progress,
                          base_path(files, '.%s.fetch' % name),
                          beat=held.beat)
        finally:
            # Removed while held: a fetch waiting for it opens the
            # lock file again (fetch_lock), so it is never held twice.
            _drop_temp(files, lock, what=('lock',))


def _fetch(files, sha256, sources, progress, fixed, beat=None):
    """Copy the base from the first usable source into ``fixed`` (kept
    when cut off, for the next fetch) or, when None, into a new name of
    its own (always removed); then rename it. ``beat()`` as it moves (the
    beat of the lock held, if any)."""
    tick = _ticking(beat)
    if beat is not None:
        progress = _beating(progress, beat)
    name = layout.image_base_name(sha256)
    final = base_path(files, name)
    reasons = []
    for src_files, src_path in sources:
        where = '%s on %s' % (src_path, src_files.host)
        tmp = fixed or _temp_path(files, name, 'fetch')
        keep = fixed is not None
        try:
            if src_files.getsize(src_path) is None:
                reasons.append('%s is missing' % where)
                continue
            if keep and files.sha256(tmp, tick=tick) == sha256:
                copied = 0      # copied by a fetch cut off before rename
            else:
                copied = transfer.copy_disk(src_files, src_path, files, tmp,
                                            progress=progress).copied
            got = files.sha256(tmp, tick=tick)
            if got != sha256:
                reasons.append('%s has sha256 %s' % (where, got))
                keep = False
                continue
            # The cached file may have been replaced or removed
            # meanwhile; a good one is replaced by the same bytes.
            files.replace(tmp, final)
            _remember(files, final, files.identity(final), sha256)
            LOG.info('image base %s copied to %s from %s (%d bytes)',
                     sha256, files.host, where, copied)
            return final, copied
        except (exception.DiskError, exception.HypervisorUnavailable) as exc:
            if _hashes_to(files, final, sha256):
                # Another fetch put it there meanwhile.
                return final, 0
            LOG.warning('image base %s from %s to %s: %s', sha256, where,
                        files.host, exc)
            reasons.append('%s: %s' % (where, exc))
        finally:
            if not keep:
                _drop_temp(files, tmp)
    raise exception.ImageUnavailable(
        sha256=sha256, host=files.host,
        reason='; '.join(reasons) or 'no source was given')


def ensure_blank_base(files, kind, size):
    """``_base/ephemeral_<size>_ext4`` (kind 'ephemeral', ``size`` GiB,
    ext4) or ``_base/swap_<size>`` (kind 'swap', ``size`` MiB, mkswap):
    a raw sparse file made on the host itself, under a temporary name
    then renamed; one that is there with its size is kept. Its path."""
    if kind == 'ephemeral':
        name = layout.ephemeral_base_name(size)
        size_bytes = int(size) * disk.GiB
        ident = str(uuidlib.uuid5(_NAMESPACE, name))
        argv = ['mke2fs', '-q', '-t', 'ext4', '-F', '-U', ident,
                '-E', 'hash_seed=' + ident]
    elif kind == 'swap':
        name = layout.swap_base_name(size)
        size_bytes = int(size) * disk.MiB
        argv = ['mkswap', '-q', '-U',
                str(uuidlib.uuid5(_NAMESPACE, name))]
    else:
        raise exception.InvalidInput(
            reason='a blank base is ephemeral or swap, not %r' % (kind,))
    final = base_path(files, name)
    _ensure_base_dir(files)
    files.touch(final)
    if files.getsize(final) == size_bytes:
        return final
    tmp = _temp_path(files, name, 'blank')
    try:
        files.make_blank(tmp, size_bytes, argv,
                         env={'E2FSPROGS_FAKE_TIME': _FAKE_TIME})
        files.replace(tmp, final)
    finally:
        _drop_temp(files, tmp)
    return final


def _instance_dirs(files):
    return sorted(e for e in files.listdir(files.instances_path)
                  if _INSTANCE_DIR.match(e))


def bases_in_use(files):
    """``{base name: [instance directories using it]}``: the backing file
    of each disk (:data:`.layout.VIRTIO_DISKS`) of each instance
    directory (``<uuid>``, ``<uuid>_resize``, ``<uuid>_revert``) of the
    host, read by qemu-img info (no link followed); only backing files in
    this host's ``_base`` count. Read again if the directories changed
    meanwhile (a move renamed one)."""
    join = _join(files)
    cache = base_dir(files)
    entries = _instance_dirs(files)
    for _try in range(_STABLE_TRIES):
        used = {}
        for entry in entries:
            for name in layout.VIRTIO_DISKS:
                path = join(files.instances_path, entry, name)
                info = files.disk_info(path)
                backing = (info or {}).get('full-backing-filename') or (
                    info or {}).get('backing-filename')
                if not backing:
                    continue
                if not backing.startswith('/'):
                    backing = join(files.instances_path, entry, backing)
                backing = (posixpath.normpath(backing)
                           if files.machine is not None
                           else os.path.normpath(backing))
                folder, base = (posixpath.split(backing)
                                if files.machine is not None
                                else os.path.split(backing))
                if folder == cache:
                    users = used.setdefault(base, [])
                    if entry not in users:
                        users.append(entry)
        again = _instance_dirs(files)
        if again == entries:
            return used
        entries = again
    raise exception.DiskError(
        host=files.host, reason='the instance directories of %s kept '
        'changing while their disks were read' % files.instances_path)


def clean(files, min_age=None):
    """Remove the cached bases of the host that no instance directory
    uses, and the temporary files of fetches that ended without a rename
    (a crash); ``[(name, bytes freed)]``.

    Never removed: a base in use (:func:`bases_in_use`), anything that
    changed less than ``min_age`` seconds ago (by default
    ``[image_cache]/remove_unused_minimum_age_seconds``: a server being
    created may be about to use it), a name that is neither a base nor
    such a temporary, a link, a directory or a file with other links, the
    files of a fetch whose lock is held (it is going on)."""
    if min_age is None:
        min_age = CONF.image_cache.remove_unused_minimum_age_seconds
    folder = base_dir(files)
    entries = files.scan(folder)
    if not entries:
        return []
    used = bases_in_use(files)
    removed = []
    held = {}
    for name, entry in sorted(entries.items()):
        base = layout.is_base_name(name)
        if not base and not is_temp_name(name):
            continue
        if entry.kind != 'file' or entry.nlink != 1:
            LOG.warning('image cache of %s: %s is %s with %d links, left '
                        'as it is', files.host, name, entry.kind,
                        entry.nlink)
            continue
        if (base and name in used) or entry.age < min_age:
            continue
        if _fetch_going(files, name, entries, held):
            continue
        if _remove(files, base_path(files, name), _is_lock_name(name)):
            LOG.info('image cache of %s: removed %s (%d bytes)',
                     files.host, name, entry.allocated)
            removed.append((name, entry.allocated))
    return removed


def _remove(files, path, lock):
    """Remove the file ``path``; a lock file only while we hold it (not
    while a fetch does: it would lock a new file, beside the one held)."""
    if not lock:
        return files.remove_file(path)
    with files.fetch_lock(path, 0) as held:
        return held and files.remove_file(path)


def _fetch_going(files, name, entries, held):
    """Whether ``name`` is the fixed-name temporary of a fetch whose lock
    is held: an old partial copy being resumed. ``held`` caches, by lock
    name, what was found."""
    match = _TEMP.match(name)
    if not match or match.group('token') or _is_lock_name(name):
        return False
    lock = '.%s.lock' % match.group('base')
    if lock not in entries:
        return False        # only a fetch holding it removes it
    if lock not in held:
        with files.fetch_lock(base_path(files, lock), 0) as got:
            held[lock] = not got
    return held[lock]
