"""Images: add one to the image store, list, show and delete them.

Every check comes first (access rule, name, files, format, duplicate
name), so a refused request stores no file and writes no record. An
image's files are stored (:mod:`resize_flows.imagestore`), then recorded
(:mod:`resize_flows.persistence.images`); a record is deleted before its
files, and only while no server names the image. Each host's image cache
(``_base/``) is cleaned of the bases nothing uses by
:func:`clean_image_cache`.
"""
import logging
import os
import stat
import uuid as uuidlib

from resize_flows.api import context
from resize_flows import exception
from resize_flows import imageformat
from resize_flows import imagestore
from resize_flows.persistence import images
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import validation
from resize_flows import virt

LOG = logging.getLogger(__name__)


def _looks_like_uuid(name):
    try:
        uuidlib.UUID(name)
    except ValueError:
        return False
    return True


def _regular_file(what, path):
    """Refuse ``path`` unless it is a regular file (links to one are the
    user's own business: the path is theirs, given on this machine)."""
    if not isinstance(path, str) or not path:
        raise exception.InvalidInput(
            reason='the %s must be a path, not %r' % (what, path))
    try:
        st = os.stat(path)
    except OSError as exc:
        raise exception.InvalidInput(
            reason='%s %s: %s' % (what, path, exc.strerror))
    if not stat.S_ISREG(st.st_mode):
        raise exception.InvalidInput(
            reason='%s %s is not a regular file' % (what, path))
    if what != 'image file' and st.st_size == 0:
        raise exception.InvalidInput(reason='%s %s is empty' % (what, path))


@context.tenant_facing
def create_image(ctx, name, path, disk_format=None, kernel=None,
                 ramdisk=None):
    """Add the disk image at ``path`` (qcow2 or raw, standing alone; the
    format is found by qemu-img, and must be ``disk_format`` when that is
    given) to the image store as image ``name``, with the ``kernel`` and
    ``ramdisk`` it boots by (both or neither). The sha256 and sizes of
    each are recorded. Returns the image's record."""
    policy.authorize(ctx, policy.IMAGE_CREATE)
    validation.check_name('image', name)
    if _looks_like_uuid(name):
        raise exception.InvalidInput(
            reason='an image name must not look like a uuid: %r' % name)
    if (kernel is None) != (ramdisk is None):
        raise exception.InvalidInput(
            reason='an image boots by a kernel and a ramdisk together: '
                   'give both --kernel and --ramdisk, or neither')
    _regular_file('image file', path)
    for what, extra in (('kernel', kernel), ('ramdisk', ramdisk)):
        if extra is not None:
            _regular_file(what, extra)
    found = imageformat.inspect(path, disk_format)
    if images.image_exists(name):
        raise exception.Duplicate(kind='Image', name=name)

    store = imagestore.get_store()
    stored = []
    try:
        image_id, sha256, size = store.put(
            path, check=lambda part: imageformat.check_same(part, found))
        stored.append(image_id)
        values = dict(uuid=image_id, name=name, sha256=sha256, size=size,
                      **found)
        for what, extra in (('kernel', kernel), ('ramdisk', ramdisk)):
            if extra is not None:
                extra_id, extra_sha, _size = store.put(extra)
                stored.append(extra_id)
                values.update({what + '_id': extra_id,
                               what + '_sha256': extra_sha})
        return images.image_create(**values)
    except BaseException:
        for stored_id in stored:
            try:
                store.delete(stored_id)
            except Exception:
                LOG.exception('could not remove the stored file %s of '
                              'refused image %s', stored_id, name)
        raise


@context.tenant_facing
def list_images(ctx):
    """Every image, by name."""
    policy.authorize(ctx, policy.IMAGE_LIST)
    return images.image_list()


@context.tenant_facing
def get_image(ctx, ident):
    """An image by uuid or name: ImageNotFound (404) when there is none."""
    policy.authorize(ctx, policy.IMAGE_SHOW)
    if not isinstance(ident, str) or not ident:
        raise exception.ImageNotFound(image_id=ident)
    return images.image_find(ident)


@context.tenant_facing
def delete_image(ctx, ident):
    """Delete an image and its files; refused (ImageInUse, 409) while a
    server names it."""
    policy.authorize(ctx, policy.IMAGE_DELETE)
    image = get_image(ctx, ident)
    images.image_destroy(image['uuid'])
    store = imagestore.get_store()
    for key in ('uuid', 'kernel_id', 'ramdisk_id'):
        if image[key]:
            store.delete(image[key])


@context.tenant_facing
def clean_image_cache(ctx, host=None):
    """Remove from the image cache (``_base/``) of ``host``, or of every
    host, the cached bases that no instance directory there uses and
    that have not changed for ``[image_cache]/
    remove_unused_minimum_age_seconds`` (and the files a crashed fetch
    left). A base in use is never removed. Returns ``{host: {'removed':
    [{'base': name, 'bytes': bytes freed}], 'bytes_freed': total}}``;
    over every host, a host that does not answer has ``'error'`` (one
    line) instead, and the others are cleaned all the same.
    HostNotFound (404) for an unknown ``host``, before anything is
    removed."""
    policy.authorize(ctx, policy.IMAGE_CACHE_CLEAN)
    if host is None:
        hosts = repository.host_list()
    elif not isinstance(host, str) or not host:
        raise exception.HostNotFound(host=host)
    else:
        hosts = [repository.host_get(host)]
    result = {}
    for record in hosts:
        try:
            cleaned = virt.clean_image_cache(record)
        except exception.HypervisorUnavailable as e:
            if host is not None:
                raise
            result[record['name']] = {'removed': [], 'bytes_freed': 0,
                                      'error': str(e)}
            continue
        removed = [{'base': name, 'bytes': size} for name, size in cleaned]
        result[record['name']] = {
            'removed': removed,
            'bytes_freed': sum(r['bytes'] for r in removed)}
    return result
