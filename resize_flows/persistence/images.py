"""The records of images: create, find, list, and delete one that no
instance names.

The files are the image store's (``resize_flows.imagestore``); a record
names them by their store ids: the disk's is the image's uuid. The
record is written after its files are stored and deleted before they
are, so a record always has its files (a process that dies between the
two leaves files that no record names, never the reverse).
"""
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import models


def image_create(**values):
    """Record an image (``values``: the columns of ``images``)."""
    try:
        with db.session_scope() as s:
            image = models.Image(**values)
            s.add(image)
            s.flush()
            return models.as_dict(image)
    except sa_exc.IntegrityError:
        raise exception.Duplicate(kind='Image', name=values.get('name'))


def image_find(ident):
    """An image by uuid or by name."""
    with db.session_scope(read_only=True) as s:
        image = s.scalars(sa.select(models.Image).filter_by(
            uuid=ident)).first()
        if image is None:
            image = s.scalars(sa.select(models.Image).filter_by(
                name=ident)).first()
        if image is None:
            raise exception.ImageNotFound(image_id=ident)
        return models.as_dict(image)


def image_exists(name):
    with db.session_scope(read_only=True) as s:
        return s.scalars(sa.select(models.Image.id).filter_by(
            name=name)).first() is not None


def image_list():
    with db.session_scope(read_only=True) as s:
        return [models.as_dict(i) for i in s.scalars(
            sa.select(models.Image).order_by(models.Image.name))]


def _users(session, image_uuid):
    return list(session.scalars(
        sa.select(models.Instance.uuid).filter_by(image_id=image_uuid)
        .order_by(models.Instance.id)))


def lock_image(session, image_uuid):
    """Lock an image's row for the rest of ``session``'s transaction
    (``SELECT ... FOR UPDATE``; SQLite's writers are serial already), or
    raise ImageNotFound. The creation of an instance naming the image and
    the image's delete both take it first, so whichever comes second
    waits and then sees what the first did: an instance is never created
    on a deleted image, an image never deleted under a new instance."""
    found = session.scalars(db.for_update(sa.select(models.Image.id)
                                          .filter_by(uuid=image_uuid),
                                          session)).first()
    if found is None:
        raise exception.ImageNotFound(image_id=image_uuid)


def image_destroy(image_uuid):
    """Delete the record of an image that no instance names, in one
    transaction that holds the image's lock (:func:`lock_image`): its
    check and its delete (``DELETE ... WHERE NOT EXISTS``) cannot be split
    by an instance given the image meanwhile."""
    images = models.Image.__table__
    instances = models.Instance.__table__
    with db.session_scope() as s:
        lock_image(s, image_uuid)
        result = s.execute(images.delete().where(
            images.c.uuid == image_uuid,
            ~sa.exists().where(instances.c.image_id == image_uuid)))
        if result.rowcount == 1:
            return
        users = _users(s, image_uuid)
    if users:
        raise exception.ImageInUse(image_id=image_uuid,
                                   servers=', '.join(users))
    raise exception.ImageNotFound(image_id=image_uuid)
