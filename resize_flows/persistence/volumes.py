"""The records of the ``volumes`` plugin: volumes and their attachments.

A volume is ``available`` with no attachment and ``in-use`` with one or
two: one on its instance's host, connected (the guest there has the
disk), and during a move awaiting confirm or revert the other host's,
not connected. Each change of an attachment is one transaction, so the
records never show a volume connected twice or a half-made attachment.
The hypervisors follow the records (:mod:`resize_flows.plugins.volumes`).
"""
import uuid as uuidlib

import sqlalchemy as sa

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import instance_tasks
from resize_flows.persistence import models
from resize_flows import states

AVAILABLE = 'available'
IN_USE = 'in-use'
#: The resting states of a server whose volumes may be attached or
#: detached (not RESIZED: its move awaits confirm or revert).
ATTACH_FROM = (states.ACTIVE, states.STOPPED)

_Volume = models.Volume
_Attachment = models.VolumeAttachment


def volume_create(name, project_id, size_gb, disk_format, path,
                  volume_id=None):
    with db.session_scope() as s:
        vol = _Volume(id=volume_id or str(uuidlib.uuid4()), name=name,
                      project_id=project_id, size_gb=size_gb,
                      disk_format=disk_format, path=path, status=AVAILABLE)
        s.add(vol)
        s.flush()
        return models.as_dict(vol)


def volume_find(ident, project_id=None):
    """A volume by id, or by name (one of that name), in ``project_id``
    (None: every project); VolumeNotFound otherwise."""
    with db.session_scope(read_only=True) as s:
        query = sa.select(_Volume)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        found = s.scalars(query.filter_by(id=ident)).first()
        if found is None:
            named = list(s.scalars(query.filter_by(name=ident)).all())
            if len(named) > 1:
                raise exception.InvalidInput(
                    reason='%d volumes are called %r: name one by its id'
                           % (len(named), ident))
            found = named[0] if named else None
        if found is None:
            raise exception.VolumeNotFound(volume_id=ident)
        return models.as_dict(found)


def volume_list(project_id=None):
    with db.session_scope(read_only=True) as s:
        query = sa.select(_Volume).order_by(_Volume.name, _Volume.id)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        return [models.as_dict(v) for v in s.scalars(query)]


def _lock_volume(s, volume_id):
    vol = s.scalars(db.for_update(sa.select(_Volume).filter_by(
        id=volume_id), s)).first()
    if vol is None:
        raise exception.VolumeNotFound(volume_id=volume_id)
    return vol


def _attachments(s, **filters):
    return list(s.scalars(sa.select(_Attachment).filter_by(**filters)
                          .order_by(_Attachment.volume_id,
                                    _Attachment.host)))


def volume_destroy(volume_id):
    """Delete the record of a volume with no attachment (VolumeInUse
    otherwise), in one transaction that holds the volume's row."""
    with db.session_scope() as s:
        vol = _lock_volume(s, volume_id)
        held = _attachments(s, volume_id=volume_id)
        if held:
            raise exception.VolumeInUse(
                volume_id=volume_id, reason='attached to server %s'
                % held[0].instance_uuid)
        s.delete(vol)


def attachment_list(instance_uuid=None, host=None, volume_id=None):
    filters = {k: v for k, v in (('instance_uuid', instance_uuid),
                                 ('host', host), ('volume_id', volume_id))
               if v is not None}
    with db.session_scope(read_only=True) as s:
        return [models.as_dict(a) for a in _attachments(s, **filters)]


def connected_volumes(instance_uuid, host):
    """The volumes (records) whose attachment to ``instance_uuid`` on
    ``host`` is connected, by id."""
    with db.session_scope(read_only=True) as s:
        rows = s.execute(
            sa.select(_Volume).join(_Attachment,
                                    _Attachment.volume_id == _Volume.id)
            .where(_Attachment.instance_uuid == instance_uuid,
                   _Attachment.host == host,
                   _Attachment.connected.is_(True))
            .order_by(_Volume.id)).scalars()
        return [models.as_dict(v) for v in rows]


def _check_server(s, instance_uuid, host, method):
    """Hold the instance's row and refuse unless it rests on ``host``
    with no move under way: a move starts by a compare-and-swap on that
    row, so it comes wholly before or after this transaction."""
    instance_tasks.lock_instance(s, instance_uuid, method, ATTACH_FROM, host)


def attach(volume_id, instance_uuid, host):
    """Record ``volume_id`` attached to ``instance_uuid`` on ``host``,
    connected, and the volume in-use: one transaction that refuses a
    volume attached elsewhere (VolumeInUse) and a server that is not at
    rest on ``host``. Attached to this server there already: nothing to
    do (an attach killed midway is finished by running it again)."""
    with db.session_scope() as s:
        _check_server(s, instance_uuid, host, 'attach_volume')
        vol = _lock_volume(s, volume_id)
        held = _attachments(s, volume_id=volume_id)
        if held:
            mine = [a for a in held if a.instance_uuid == instance_uuid
                    and a.host == host and a.connected]
            if len(held) == 1 and mine:
                return
            raise exception.VolumeInUse(
                volume_id=volume_id, reason='attached to server %s'
                % held[0].instance_uuid)
        s.add(_Attachment(id=str(uuidlib.uuid4()), volume_id=volume_id,
                          instance_uuid=instance_uuid, host=host,
                          connected=True))
        vol.status = IN_USE


def check_detach(volume_id, instance_uuid, host):
    """Refuse a detach unless the server rests on ``host`` and the volume
    is attached to it (VolumeNotAttached)."""
    with db.session_scope() as s:
        _check_server(s, instance_uuid, host, 'detach_volume')
        _lock_volume(s, volume_id)
        if not _attachments(s, volume_id=volume_id,
                            instance_uuid=instance_uuid):
            raise exception.VolumeNotAttached(volume_id=volume_id,
                                              instance_uuid=instance_uuid)


def detach(volume_id, instance_uuid, host):
    """Drop the attachments of ``volume_id`` to ``instance_uuid`` (the
    guest no longer has the disk) and make the volume available, with
    the checks of :func:`check_detach` again in the same transaction."""
    with db.session_scope() as s:
        _check_server(s, instance_uuid, host, 'detach_volume')
        vol = _lock_volume(s, volume_id)
        for att in _attachments(s, volume_id=volume_id,
                                instance_uuid=instance_uuid):
            s.delete(att)
        s.flush()
        if not _attachments(s, volume_id=volume_id):
            vol.status = AVAILABLE


def connect(instance_uuid, off_host, on_host, drop_off):
    """Move the connections of ``instance_uuid``'s volumes from
    ``off_host`` to ``on_host``, in one transaction: every volume with an
    attachment to it on either host gets a connected one on ``on_host``
    and the one on ``off_host`` disconnected (``drop_off``: deleted).
    Idempotent. Returns the volume ids."""
    with db.session_scope() as s:
        found = {}
        for host in (off_host, on_host):
            for att in _attachments(s, instance_uuid=instance_uuid,
                                    host=host):
                found.setdefault(att.volume_id, {})[host] = att
        for volume_id, by_host in sorted(found.items()):
            off = by_host.get(off_host)
            if off is not None and drop_off:
                s.delete(off)
            elif off is not None:
                off.connected = False
            on = by_host.get(on_host)
            if on is None:
                s.add(_Attachment(id=str(uuidlib.uuid4()),
                                  volume_id=volume_id,
                                  instance_uuid=instance_uuid, host=on_host,
                                  connected=True))
            else:
                on.connected = True
        return sorted(found)


def drop_disconnected(instance_uuid, host):
    """Delete the attachments of ``instance_uuid`` on ``host`` that are
    not connected (confirm: the source's); the volume ids."""
    with db.session_scope() as s:
        gone = [a for a in _attachments(s, instance_uuid=instance_uuid,
                                        host=host) if not a.connected]
        for att in gone:
            s.delete(att)
        return sorted(a.volume_id for a in gone)


def add_disconnected(instance_uuid, host, other_host):
    """Give every volume attached to ``instance_uuid`` on ``other_host``
    an attachment on ``host`` that is not connected, where it has none
    (the undo of :func:`drop_disconnected`)."""
    with db.session_scope() as s:
        have = {a.volume_id for a in _attachments(
            s, instance_uuid=instance_uuid, host=host)}
        for att in _attachments(s, instance_uuid=instance_uuid,
                                host=other_host):
            if att.volume_id not in have:
                s.add(_Attachment(id=str(uuidlib.uuid4()),
                                  volume_id=att.volume_id,
                                  instance_uuid=instance_uuid, host=host,
                                  connected=False))


def instance_deleted(instance_uuid):
    """Drop every attachment of ``instance_uuid``; its volumes become
    available (their files are kept). Idempotent."""
    with db.session_scope() as s:
        held = _attachments(s, instance_uuid=instance_uuid)
        ids = {a.volume_id for a in held}
        for att in held:
            s.delete(att)
        s.flush()
        for volume_id in sorted(ids):
            vol = s.get(_Volume, volume_id)
            if vol is not None and not _attachments(s, volume_id=volume_id):
                vol.status = AVAILABLE
