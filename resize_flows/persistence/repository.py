"""Reads and writes of the records, each in its own short transaction.

The records are hosts, flavors, instances, migrations, allocations and
instance actions with their events. The flow log's own rows (leases, the
job a flow was posted as, the index that lists flows) are
``flowindex.py``'s.

Functions return plain dicts (JSON-serialisable, detached from any session)
so that tasks can hand them on and the flow log can store them.

State changes that decide who may act on an instance are compare-and-swap:
``UPDATE ... WHERE <expected state>`` and a check of the row count, so two
operations can never both start on one instance. Capacity claims lock the
host row (SQLite: the database, through ``BEGIN IMMEDIATE``) while they
check and write, so two claims can never both take the last free unit.
"""
import uuid as uuidlib

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import images
from resize_flows.persistence import models
from resize_flows import states

_UNSET = object()

CONSUMER_INSTANCE = 'instance'
CONSUMER_MIGRATION = 'migration'

RESOURCES = ('vcpus', 'memory_mb', 'disk_gb')


def flavor_resources(flavor):
    """The allocation a flavor needs: {'vcpus', 'memory_mb', 'disk_gb'},
    disk counted as Nova does: root + ephemeral + swap, in GiB rounded up."""
    return {'vcpus': flavor['vcpus'], 'memory_mb': flavor['memory_mb'],
            'disk_gb': flavor['root_gb'] + flavor.get('ephemeral_gb', 0)
            - (-flavor.get('swap_mb', 0) // 1024)}


# -- hosts -------------------------------------------------------------------

def host_create(name, uri, instances_path, vcpus, memory_mb, disk_gb,
                enabled=True, ssh=None):
    try:
        with db.session_scope() as s:
            host = models.Host(name=name, uri=uri, ssh=ssh,
                               instances_path=instances_path, vcpus=vcpus,
                               memory_mb=memory_mb, disk_gb=disk_gb,
                               enabled=enabled)
            s.add(host)
            s.flush()
            return models.as_dict(host)
    except sa_exc.IntegrityError:
        raise exception.Duplicate(kind='Host', name=name)


def host_get(name):
    with db.session_scope(read_only=True) as s:
        host = s.scalars(sa.select(models.Host).filter_by(name=name)).first()
        if host is None:
            raise exception.HostNotFound(host=name)
        return models.as_dict(host)


def host_set_enabled(name, enabled):
    with db.session_scope() as s:
        host = s.scalars(sa.select(models.Host).filter_by(name=name)).first()
        if host is None:
            raise exception.HostNotFound(host=name)
        host.enabled = enabled


def host_destroy(name):
    with db.session_scope() as s:
        s.execute(sa.delete(models.Host).where(models.Host.name == name))


def host_list():
    with db.session_scope(read_only=True) as s:
        return [models.as_dict(h) for h in
                s.scalars(sa.select(models.Host).order_by(models.Host.name))]


def host_usage(session, host_id):
    """Sum of every allocation on a host, as a resources dict."""
    row = session.execute(
        sa.select(*(sa.func.coalesce(sa.func.sum(
            getattr(models.Allocation, r)), 0) for r in RESOURCES))
        .where(models.Allocation.host_id == host_id)).one()
    return dict(zip(RESOURCES, (int(v) for v in row)))


def host_list_with_usage():
    """Every host as a dict with 'used' and 'free' resources dicts."""
    with db.session_scope(read_only=True) as s:
        out = []
        for host in s.scalars(sa.select(models.Host)
                              .order_by(models.Host.name)):
            used = host_usage(s, host.id)
            entry = models.as_dict(host)
            entry['used'] = used
            entry['free'] = {r: getattr(host, r) - used[r]
                             for r in RESOURCES}
            out.append(entry)
        return out


# -- flavors -----------------------------------------------------------------

def _flavor_dict(flavor):
    out = models.as_dict(flavor)
    out['projects'] = sorted(p.project_id for p in flavor.projects)
    return out


def flavor_create(name, vcpus, memory_mb, root_gb, is_public=True,
                  projects=(), ephemeral_gb=0, swap_mb=0):
    try:
        with db.session_scope() as s:
            flavor = models.Flavor(
                name=name, vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb,
                ephemeral_gb=ephemeral_gb, swap_mb=swap_mb,
                is_public=is_public)
            flavor.projects = [models.FlavorProject(project_id=p)
                               for p in projects]
            s.add(flavor)
            s.flush()
            return _flavor_dict(flavor)
    except sa_exc.IntegrityError:
        raise exception.Duplicate(kind='Flavor', name=name)


def flavor_get(ident):
    """A flavor by id (int or digits) or by name."""
    with db.session_scope(read_only=True) as s:
        flavor = None
        if isinstance(ident, int) or str(ident).isdigit():
            flavor = s.get(models.Flavor, int(ident))
        if flavor is None:
            flavor = s.scalars(
                sa.select(models.Flavor).filter_by(name=str(ident))).first()
        if flavor is None:
            raise exception.FlavorNotFound(flavor_id=ident)
        return _flavor_dict(flavor)


def flavor_list():
    with db.session_scope(read_only=True) as s:
        return [_flavor_dict(f) for f in s.scalars(
            sa.select(models.Flavor).order_by(models.Flavor.id))]


# -- instances ---------------------------------------------------------------

def instance_create(name, project_id, user_id, host, flavor, vm_state,
                    task_state=None, instance_uuid=None, image_id=None,
                    config_drive=False):
    """Create an instance and claim its flavor on its host, or neither;
    its image is locked first (``images.lock_image``: deleted, refused)."""
    with db.session_scope() as s:
        if image_id is not None:
            images.lock_image(s, image_id)
        inst = models.Instance(
            uuid=instance_uuid or str(uuidlib.uuid4()), name=name,
            project_id=project_id, user_id=user_id, host=host,
            flavor_id=flavor['id'], vm_state=vm_state, image_id=image_id,
            config_drive=config_drive, task_state=task_state,
            power_state=states.NOSTATE, locked=False)
        s.add(inst)
        s.flush()
        _claim(s, inst.uuid, CONSUMER_INSTANCE, host,
               flavor_resources(flavor))
        return models.as_dict(inst)


def instance_destroy(instance_uuid):
    """Delete an instance record with its allocations (and its
    migrations'), migrations, actions and events."""
    with db.session_scope() as s:
        migrations = sa.select(models.Migration.uuid).where(
            models.Migration.instance_uuid == instance_uuid)
        s.execute(sa.delete(models.Allocation).where(sa.or_(
            models.Allocation.consumer_uuid == instance_uuid,
            models.Allocation.consumer_uuid.in_(migrations))))
        for act in s.scalars(sa.select(models.InstanceAction).filter_by(
                instance_uuid=instance_uuid)):
            s.delete(act)
        s.execute(sa.delete(models.Migration).where(
            models.Migration.instance_uuid == instance_uuid))
        s.execute(sa.delete(models.Instance).where(
            models.Instance.uuid == instance_uuid))


def instance_get(instance_uuid):
    with db.session_scope(read_only=True) as s:
        inst = s.scalars(sa.select(models.Instance)
                         .filter_by(uuid=instance_uuid)).first()
        if inst is None:
            raise exception.InstanceNotFound(instance_id=instance_uuid)
        return models.as_dict(inst)


def instance_find(ident, project_id=None):
    """An instance by uuid or by name (a name must be unique)."""
    with db.session_scope(read_only=True) as s:
        query = sa.select(models.Instance)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        inst = s.scalars(query.filter_by(uuid=ident)).first()
        if inst is None:
            matches = s.scalars(query.filter_by(name=ident)).all()
            if len(matches) > 1:
                raise exception.InvalidInput(
                    reason='more than one server is named %s; use its '
                           'uuid' % ident)
            inst = matches[0] if matches else None
        if inst is None:
            raise exception.InstanceNotFound(instance_id=ident)
        return models.as_dict(inst)


def instance_list(project_id=None, host=None):
    with db.session_scope(read_only=True) as s:
        query = sa.select(models.Instance).order_by(models.Instance.id)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        if host is not None:
            query = query.filter_by(host=host)
        return [models.as_dict(i) for i in s.scalars(query)]


def _instance_update(session, instance_uuid, values, expected_vm_state,
                     expected_task_state):
    table = models.Instance.__table__
    stmt = table.update().where(table.c.uuid == instance_uuid)
    if expected_vm_state is not _UNSET:
        stmt = stmt.where(table.c.vm_state.in_(_as_tuple(expected_vm_state)))
    if expected_task_state is not _UNSET:
        expected = _as_tuple(expected_task_state)
        clauses = [table.c.task_state.in_([e for e in expected
                                           if e is not None])]
        if None in expected:
            clauses.append(table.c.task_state.is_(None))
        stmt = stmt.where(sa.or_(*clauses))
    values = dict(values, updated_at=models.utcnow())
    result = session.execute(stmt.values(**values))
    if result.rowcount != 1:
        current = session.scalars(sa.select(models.Instance)
                                  .filter_by(uuid=instance_uuid)).first()
        if current is None:
            raise exception.InstanceNotFound(instance_id=instance_uuid)
        if (expected_vm_state is not _UNSET and
                current.vm_state not in _as_tuple(expected_vm_state)):
            raise exception.InstanceInvalidState(
                method='update', instance_uuid=instance_uuid,
                attr='vm_state', state=current.vm_state)
        raise exception.UnexpectedTaskStateError(
            instance_uuid=instance_uuid,
            expected=_as_tuple(expected_task_state),
            actual=current.task_state)


def _as_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple, set)) else (value,)


def instance_update(instance_uuid, values, expected_vm_state=_UNSET,
                    expected_task_state=_UNSET):
    """Update an instance; with ``expected_*`` only if it is in one of those
    states (compare-and-swap), else raise and change nothing."""
    with db.session_scope() as s:
        _instance_update(s, instance_uuid, values, expected_vm_state,
                         expected_task_state)
    return instance_get(instance_uuid)


# -- migrations --------------------------------------------------------------

def migration_get(migration_uuid):
    with db.session_scope(read_only=True) as s:
        mig = s.scalars(sa.select(models.Migration)
                        .filter_by(uuid=migration_uuid)).first()
        if mig is None:
            raise exception.MigrationNotFound(migration_id=migration_uuid)
        return models.as_dict(mig)


def migration_get_by_instance_and_status(instance_uuid, status):
    with db.session_scope(read_only=True) as s:
        mig = s.scalars(sa.select(models.Migration)
                        .filter_by(instance_uuid=instance_uuid,
                                   status=status)
                        .order_by(models.Migration.id.desc())).first()
        if mig is None:
            raise exception.MigrationNotFoundByStatus(
                instance_id=instance_uuid, status=status)
        return models.as_dict(mig)


def migration_list(instance_uuid=None, status=None, host=None,
                   open_only=False):
    with db.session_scope(read_only=True) as s:
        query = sa.select(models.Migration).order_by(models.Migration.id)
        if instance_uuid is not None:
            query = query.filter_by(instance_uuid=instance_uuid)
        if status is not None:
            query = query.filter_by(status=status)
        if host is not None:
            query = query.where(sa.or_(
                models.Migration.source_compute == host,
                models.Migration.dest_compute == host))
        if open_only:
            query = query.where(models.Migration.status.not_in(
                states.MIGRATION_TERMINAL))
        return [models.as_dict(m) for m in s.scalars(query)]


def migration_update(migration_uuid, values, expected_status=_UNSET):
    """Update a migration; with ``expected_status`` only from that status."""
    with db.session_scope() as s:
        _migration_update(s, migration_uuid, values, expected_status)
    return migration_get(migration_uuid)


def _migration_update(session, migration_uuid, values, expected_status):
    table = models.Migration.__table__
    stmt = table.update().where(table.c.uuid == migration_uuid)
    if expected_status is not _UNSET:
        stmt = stmt.where(table.c.status.in_(_as_tuple(expected_status)))
    result = session.execute(
        stmt.values(**dict(values, updated_at=models.utcnow())))
    if result.rowcount != 1:
        current = session.scalars(sa.select(models.Migration)
                                  .filter_by(uuid=migration_uuid)).first()
        if current is None:
            raise exception.MigrationNotFound(migration_id=migration_uuid)
        raise exception.UnexpectedMigrationStatus(
            migration_uuid=migration_uuid,
            expected=_as_tuple(expected_status), actual=current.status)


def start_move(instance_uuid, instance_values, expected_vm_state,
               migration_values, action, request_id, user_id, project_id):
    """Begin a resize or cold migration, or nothing at all.

    In one transaction: compare-and-swap the instance into its first task
    state (only from ``expected_vm_state`` with no task under way), create
    the migration, and record the instance action. Returns the migration.
    """
    with db.session_scope() as s:
        _instance_update(s, instance_uuid, instance_values,
                         expected_vm_state, None)
        mig = models.Migration(instance_uuid=instance_uuid,
                               **migration_values)
        s.add(mig)
        s.add(models.InstanceAction(
            request_id=request_id, instance_uuid=instance_uuid,
            action=action, user_id=user_id, project_id=project_id))
        s.flush()
        return models.as_dict(mig)


def start_resolution(instance_uuid, task_state, migration_uuid,
                     migration_status, flow_id, action, request_id, user_id,
                     project_id):
    """Begin a confirm or a revert, or nothing at all (compare-and-swap of
    the instance from RESIZED/idle and of the migration from finished)."""
    with db.session_scope() as s:
        _instance_update(s, instance_uuid, {'task_state': task_state},
                         states.RESIZED, None)
        _migration_update(s, migration_uuid,
                          {'status': migration_status, 'flow_id': flow_id},
                          states.MIGRATION_FINISHED)
        s.add(models.InstanceAction(
            request_id=request_id, instance_uuid=instance_uuid,
            action=action, user_id=user_id, project_id=project_id))


# -- allocations -------------------------------------------------------------

def allocation_list(consumer_uuid=None, host=None):
    with db.session_scope(read_only=True) as s:
        query = (sa.select(models.Allocation, models.Host.name)
                 .join(models.Host)
                 .order_by(models.Allocation.id))
        if consumer_uuid is not None:
            query = query.where(
                models.Allocation.consumer_uuid == consumer_uuid)
        if host is not None:
            query = query.where(models.Host.name == host)
        out = []
        for alloc, host_name in s.execute(query):
            entry = models.as_dict(alloc)
            entry['host'] = host_name
            out.append(entry)
        return out


def _lock_host(session, host_name):
    stmt = db.for_update(sa.select(models.Host).filter_by(name=host_name),
                         session)
    host = session.scalars(stmt).first()
    if host is None:
        raise exception.HostNotFound(host=host_name)
    return host


def _claim(session, consumer_uuid, consumer_type, host_name, resources):
    host = _lock_host(session, host_name)
    existing = session.scalars(sa.select(models.Allocation).filter_by(
        consumer_uuid=consumer_uuid, host_id=host.id)).first()
    if existing is not None:
        held = {r: getattr(existing, r) for r in RESOURCES}
        if held == resources:
            return False            # claimed already (a re-run)
        raise exception.Conflict(
            reason='%s %s already holds %s on host %s' % (
                consumer_type, consumer_uuid, held, host_name))
    used = host_usage(session, host.id)
    for r in RESOURCES:
        free = getattr(host, r) - used[r]
        if resources[r] > free:
            raise exception.InsufficientResources(
                host=host_name, resource=r, requested=resources[r],
                free=free)
    session.add(models.Allocation(consumer_uuid=consumer_uuid,
                                  consumer_type=consumer_type,
                                  host_id=host.id, **resources))
    return True


def claim(consumer_uuid, consumer_type, host_name, resources):
    """Allocate ``resources`` on a host to a consumer if they fit.

    Idempotent: the same claim made twice holds once. Raises
    ``InsufficientResources`` and writes nothing when it does not fit.
    """
    with db.session_scope() as s:
        return _claim(s, consumer_uuid, consumer_type, host_name, resources)


def release(consumer_uuid, host_name=None):
    """Delete a consumer's allocations (on one host). Returns how many."""
    with db.session_scope() as s:
        return _release(s, consumer_uuid, host_name)


def _release(session, consumer_uuid, host_name=None):
    stmt = sa.delete(models.Allocation).where(
        models.Allocation.consumer_uuid == consumer_uuid)
    if host_name is not None:
        host = _lock_host(session, host_name)
        stmt = stmt.where(models.Allocation.host_id == host.id)
    return session.execute(stmt).rowcount


def move_allocation(from_consumer, to_consumer, to_type, host_name):
    """Hand a consumer's allocation on a host to another consumer (Nova
    gives the source host's usage to the migration during a move).

    Idempotent: moved already is fine.
    """
    with db.session_scope() as s:
        _move(s, from_consumer, to_consumer, to_type, host_name)


def _move(session, from_consumer, to_consumer, to_type, host_name):
    host = _lock_host(session, host_name)
    alloc = session.scalars(sa.select(models.Allocation).filter_by(
        consumer_uuid=from_consumer, host_id=host.id)).first()
    if alloc is None:
        moved = session.scalars(sa.select(models.Allocation).filter_by(
            consumer_uuid=to_consumer, host_id=host.id)).first()
        if moved is not None:
            return
        raise exception.Conflict(
            reason='%s holds nothing on host %s to hand over' % (
                from_consumer, host_name))
    alloc.consumer_uuid = to_consumer
    alloc.consumer_type = to_type


def claim_for_move(instance_uuid, migration_uuid, source_host, dest_host,
                   resources):
    """In one transaction: give the instance's source allocation to the
    migration and claim ``resources`` on the destination for the instance.

    On the same host the migration holds the old flavor and the instance
    the new one side by side, as Nova does for a resize to the same host.
    The migration's ``dest_compute`` becomes ``dest_host`` in the same
    transaction (a reschedule moves it with the claim).
    """
    with db.session_scope() as s:
        _move(s, instance_uuid, migration_uuid, CONSUMER_MIGRATION,
              source_host)
        _claim(s, instance_uuid, CONSUMER_INSTANCE, dest_host, resources)
        _migration_update(s, migration_uuid, {'dest_compute': dest_host},
                          _UNSET)


def unclaim_for_move(instance_uuid, migration_uuid, source_host, dest_host):
    """Undo :func:`claim_for_move` (and release the destination claim of a
    reverted move): drop the instance's destination allocation and give the
    migration's source allocation back to the instance."""
    with db.session_scope() as s:
        source = _lock_host(s, source_host)
        held = s.scalars(sa.select(models.Allocation).filter_by(
            consumer_uuid=migration_uuid, host_id=source.id)).first()
        if held is None:
            # Never claimed, or undone already: the instance's allocation
            # (on the same host, maybe) is its original one; keep it.
            return False
        _release(s, instance_uuid, dest_host)
        _move(s, migration_uuid, instance_uuid, CONSUMER_INSTANCE,
              source_host)
        return True
