"""The records of the ``ports`` plugin: ports and their host bindings.

A port (``ports``) has a MAC for its whole life and is attached to at
most one instance; a binding (``port_bindings``) says on which host the
port is wired, ACTIVE (the guest there uses it) or INACTIVE (prepared for
a move, or kept for a revert), as Neutron's port bindings.

Attach and detach take the instance's row first
(:func:`.instance_tasks.lock_instance`) and check in that transaction
that no move is under way (the API holds the instance by a task state
of its own meanwhile: :func:`.instance_tasks.held`), so that a move that
begins meanwhile (a compare-and-swap on the same row) either sees the
port attached or makes the attach fail, never half of it.
"""
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import instance_tasks
from resize_flows.persistence import models
from resize_flows import states

ACTIVE = 'ACTIVE'
INACTIVE = 'INACTIVE'

#: The vm_states in which a port may be attached or detached (Nova's
#: interface attach: no task under way, not RESIZED).
CHANGEABLE_VM_STATES = (states.ACTIVE, states.STOPPED)

_PORTS = models.Port.__table__
_BINDINGS = models.PortBinding.__table__


def port_create(port_id, name, project_id, mac_address):
    """Record a port, attached to nothing; MacAddressInUse when another
    port has that MAC."""
    try:
        with db.session_scope() as s:
            port = models.Port(id=port_id, name=name, project_id=project_id,
                               mac_address=mac_address, instance_uuid=None)
            s.add(port)
            s.flush()
            return models.as_dict(port)
    except sa_exc.IntegrityError:
        raise exception.MacAddressInUse(mac=mac_address)


def mac_in_use(mac_address):
    with db.session_scope(read_only=True) as s:
        return s.scalars(sa.select(models.Port.id).filter_by(
            mac_address=mac_address)).first() is not None


def port_find(ident, project_id=None):
    """A port by id, or by name (PortNotFound when none or several have
    that name); with ``project_id`` only that project's."""
    with db.session_scope(read_only=True) as s:
        query = sa.select(models.Port)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        port = s.scalars(query.filter_by(id=ident)).first()
        if port is None:
            named = list(s.scalars(query.filter_by(name=ident).limit(2)))
            if len(named) == 1:
                port = named[0]
        if port is None:
            raise exception.PortNotFound(port_id=ident)
        return models.as_dict(port)


def port_list(project_id=None, instance_uuid=None):
    """Ports by name (then id), of a project and of an instance when
    given."""
    with db.session_scope(read_only=True) as s:
        query = sa.select(models.Port)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        if instance_uuid is not None:
            query = query.filter_by(instance_uuid=instance_uuid)
        return [models.as_dict(p) for p in s.scalars(
            query.order_by(models.Port.name, models.Port.id))]


def instance_ports(instance_uuid):
    """The ports of an instance, in the order its guest has their NICs
    (oldest port first)."""
    with db.session_scope(read_only=True) as s:
        return [models.as_dict(p) for p in s.scalars(
            sa.select(models.Port).filter_by(instance_uuid=instance_uuid)
            .order_by(models.Port.created_at, models.Port.id))]


def binding_list(port_ids=None):
    """``[{'port_id', 'host', 'status'}]`` sorted, of ``port_ids`` or of
    every port."""
    with db.session_scope(read_only=True) as s:
        query = sa.select(_BINDINGS.c.port_id, _BINDINGS.c.host,
                          _BINDINGS.c.status)
        if port_ids is not None:
            query = query.where(_BINDINGS.c.port_id.in_(list(port_ids)))
        return [dict(r._mapping) for r in s.execute(
            query.order_by(_BINDINGS.c.port_id, _BINDINGS.c.host))]


def port_destroy(port_id):
    """Delete a port that is attached to nothing (its bindings go with
    it); PortInUse while it is attached."""
    with db.session_scope() as s:
        found = s.execute(sa.select(_PORTS.c.instance_uuid).where(
            _PORTS.c.id == port_id)).first()
        if found is None:
            raise exception.PortNotFound(port_id=port_id)
        if found.instance_uuid is not None:
            raise exception.PortInUse(port_id=port_id,
                                      instance_uuid=found.instance_uuid)
        s.execute(_BINDINGS.delete().where(_BINDINGS.c.port_id == port_id))
        s.execute(_PORTS.delete().where(_PORTS.c.id == port_id,
                                        _PORTS.c.instance_uuid.is_(None)))


def port_attach(port_id, instance_uuid):
    """Attach a free port to an instance that has no move under way,
    bound ACTIVE on the instance's host; returns that host."""
    with db.session_scope() as s:
        inst = instance_tasks.lock_instance(
            s, instance_uuid, 'attach_port', CHANGEABLE_VM_STATES)
        result = s.execute(_PORTS.update().where(
            _PORTS.c.id == port_id, _PORTS.c.instance_uuid.is_(None))
            .values(instance_uuid=instance_uuid,
                    updated_at=models.utcnow()))
        if result.rowcount != 1:
            found = s.execute(sa.select(_PORTS.c.instance_uuid).where(
                _PORTS.c.id == port_id)).first()
            if found is None:
                raise exception.PortNotFound(port_id=port_id)
            raise exception.PortInUse(port_id=port_id,
                                      instance_uuid=found.instance_uuid)
        s.execute(_BINDINGS.delete().where(_BINDINGS.c.port_id == port_id))
        s.add(models.PortBinding(port_id=port_id, host=inst.host,
                                 status=ACTIVE))
        return inst.host


def port_detach(port_id, instance_uuid, check_instance=True):
    """Detach a port from an instance (with ``check_instance``, only
    while the instance has no move under way), its bindings removed."""
    with db.session_scope() as s:
        if check_instance:
            instance_tasks.lock_instance(
                s, instance_uuid, 'detach_port', CHANGEABLE_VM_STATES)
        result = s.execute(_PORTS.update().where(
            _PORTS.c.id == port_id, _PORTS.c.instance_uuid == instance_uuid)
            .values(instance_uuid=None, updated_at=models.utcnow()))
        if result.rowcount != 1:
            raise exception.PortNotAttached(port_id=port_id,
                                            instance_uuid=instance_uuid)
        s.execute(_BINDINGS.delete().where(_BINDINGS.c.port_id == port_id))


def release_instance(instance_uuid):
    """Detach every port of an instance and remove their bindings."""
    with db.session_scope() as s:
        ids = list(s.scalars(sa.select(_PORTS.c.id).where(
            _PORTS.c.instance_uuid == instance_uuid)))
        if not ids:
            return []
        s.execute(_BINDINGS.delete().where(_BINDINGS.c.port_id.in_(ids)))
        s.execute(_PORTS.update().where(_PORTS.c.id.in_(ids))
                  .values(instance_uuid=None, updated_at=models.utcnow()))
        return ids


def set_bindings(instance_uuid, changes):
    """For every port of an instance, in one transaction: ``changes``
    ``{host: status}``, where a status is ACTIVE or INACTIVE (the binding
    made or changed) or None (removed). Returns the instance's port ids."""
    with db.session_scope() as s:
        ids = list(s.scalars(sa.select(_PORTS.c.id).where(
            _PORTS.c.instance_uuid == instance_uuid)
            .order_by(_PORTS.c.id)))
        for host, status in changes.items():
            for port_id in ids:
                where = (_BINDINGS.c.port_id == port_id,
                         _BINDINGS.c.host == host)
                if status is None:
                    s.execute(_BINDINGS.delete().where(*where))
                    continue
                result = s.execute(_BINDINGS.update().where(*where).values(
                    status=status, updated_at=models.utcnow()))
                if result.rowcount == 0:
                    s.add(models.PortBinding(port_id=port_id, host=host,
                                             status=status))
                    s.flush()
        return ids
