"""The image store: where the files of images are kept, behind a small
interface that a Glance-like service can take over.

The interface (:class:`ImageStore`), which callers keep to:

- ``put(source, check=None) -> (id, sha256, size)``: copy the regular
  file at ``source`` into the store under a new id; ``check(path)`` may
  look at the complete copy before it gets its id, and refuse it by
  raising (then nothing is left in the store);
- ``open(id)``: the stored file, open for binary reading;
- ``path(id)``: a path on this machine where the stored file can be read
  (a store that keeps its files elsewhere would fetch them to a cache);
- ``delete(id)``: remove the stored file (nothing to remove is not an
  error);
- ``exists(id)``.

Ids are uuids the store makes. The records (``images``) say which ids
belong to which image; the store knows only files. This implementation
keeps them in ``<state_dir>/images/``, each file named by its id, written
under a temporary name (``.<id>.part``), fsynced, made 0644 and renamed,
so a file under an id is always complete. Runs of zeros are skipped
(``lseek``) rather than written, so a sparse raw image stays sparse. A
process that dies during a copy leaves a ``.part`` file, which no id
names.
"""
import hashlib
import os
import re
import stat
import uuid as uuidlib

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.virt.libvirt import disk

CHUNK = 1024 * 1024
#: Runs of zeros this long (and aligned) are skipped, not written.
BLOCK = 64 * 1024
MODE = 0o644
PART_SUFFIX = '.part'
_ID_RE = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                    r'[0-9a-f]{12}\Z')


class ImageStore:
    """The store in a directory of this machine (see the module's
    docstring for the interface)."""

    def __init__(self, root):
        self.root = root

    def path(self, image_id):
        if not isinstance(image_id, str) or not _ID_RE.match(image_id):
            raise exception.InvalidInput(
                reason='%r is not an image store id' % (image_id,))
        return os.path.join(self.root, image_id)

    def exists(self, image_id):
        try:
            st = os.lstat(self.path(image_id))
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode)

    def open(self, image_id):
        fd = os.open(self.path(image_id),
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return os.fdopen(fd, 'rb')

    def delete(self, image_id):
        try:
            os.unlink(self.path(image_id))
        except FileNotFoundError:
            return
        disk.fsync_dir(self.root)

    def put(self, source, check=None):
        image_id = str(uuidlib.uuid4())
        final = self.path(image_id)
        # O_NONBLOCK: a FIFO put in the file's place opens without a
        # writer (and is refused below); a regular file's reads ignore it.
        src = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                raise exception.InvalidInput(
                    reason='%s is not a regular file' % source)
            os.makedirs(self.root, mode=0o755, exist_ok=True)
            part = os.path.join(self.root, '.%s%s' % (image_id, PART_SUFFIX))
            dst = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL |
                          os.O_NOFOLLOW | os.O_CLOEXEC, MODE)
            try:
                try:
                    digest, size = _copy(src, dst)
                    os.fchmod(dst, MODE)
                    os.fsync(dst)
                finally:
                    os.close(dst)
                if check is not None:
                    check(part)
                os.rename(part, final)
            except BaseException:
                _unlink_quietly(part)
                raise
            disk.fsync_dir(self.root)
        finally:
            os.close(src)
        return image_id, digest, size


def _copy(src, dst):
    """Copy ``src`` to ``dst`` (fds), skipping runs of zeros; return
    (sha256 hex, bytes)."""
    sha = hashlib.sha256()
    size = 0
    zeros = bytes(BLOCK)
    while True:
        chunk = os.read(src, CHUNK)
        if not chunk:
            break
        sha.update(chunk)
        size += len(chunk)
        chunk = memoryview(chunk)
        for start in range(0, len(chunk), BLOCK):
            block = chunk[start:start + BLOCK]
            if block == zeros[:len(block)]:
                os.lseek(dst, len(block), os.SEEK_CUR)
                continue
            disk.write_all(dst, block)
    os.ftruncate(dst, size)
    return sha.hexdigest(), size


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def get_store():
    """The image store of this configuration: ``<state_dir>/images``."""
    return ImageStore(os.path.join(CONF.state_dir, 'images'))


def for_driver(image_record):
    """What a driver is given of an image (``spawn``, the moves): a plain
    dict of an image's record (``persistence.images``) with the paths of
    its files in this configuration's store: ``uuid``, ``sha256``,
    ``disk_format``, ``virtual_size``, ``path``, ``kernel_path`` and
    ``ramdisk_path`` (None when absent), ``kernel_sha256``,
    ``ramdisk_sha256``."""
    store = get_store()
    out = {key: image_record[key] for key in (
        'uuid', 'sha256', 'disk_format', 'virtual_size', 'kernel_sha256',
        'ramdisk_sha256')}
    out['path'] = store.path(image_record['uuid'])
    for what in ('kernel', 'ramdisk'):
        store_id = image_record[what + '_id']
        out[what + '_path'] = None if store_id is None else store.path(
            store_id)
    return out
