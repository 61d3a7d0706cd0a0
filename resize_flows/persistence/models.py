"""SQLAlchemy 2 models of the records resize-flows keeps.

Every change here needs an alembic revision under ``migrations/versions``;
``tests/functional/test_db_migrations.py`` fails when the two disagree.
The flow log (logbooks, flow details, atom details: what TaskFlow's
engines persist) is declared here too, at the end, and written by
:mod:`resize_flows.persistence.flowlog`.
"""
import datetime
from typing import Optional

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy import orm

from resize_flows import timeutils


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


NAMING = {
    'ix': 'ix_%(table_name)s_%(column_0_N_name)s',
    'uq': 'uq_%(table_name)s_%(column_0_N_name)s',
    'fk': 'fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s',
    'pk': 'pk_%(table_name)s',
    'ck': 'ck_%(table_name)s_%(constraint_name)s',
}


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)


class TimestampMixin:
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, default=utcnow, nullable=False)
    updated_at: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        sa.DateTime, onupdate=utcnow)


class Host(TimestampMixin, Base):
    """A compute host: one libvirt hypervisor and its instances path."""
    __tablename__ = 'hosts'

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), unique=True)
    uri: orm.Mapped[str] = orm.mapped_column(sa.String(1024))
    instances_path: orm.Mapped[str] = orm.mapped_column(sa.String(1024))
    # [user@]host[:port] of the machine holding instances_path; None: the
    # machine that runs the flows.
    ssh: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(255), nullable=True)
    vcpus: orm.Mapped[int]
    memory_mb: orm.Mapped[int]
    disk_gb: orm.Mapped[int]
    enabled: orm.Mapped[bool] = orm.mapped_column(default=True)
    # Why it was disabled (host disable --reason, host drain); None when
    # enabled or disabled without a reason.
    disabled_reason: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(255), nullable=True)


class Flavor(TimestampMixin, Base):
    __tablename__ = 'flavors'

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), unique=True)
    vcpus: orm.Mapped[int]
    memory_mb: orm.Mapped[int]
    root_gb: orm.Mapped[int]
    #: An ephemeral disk (GB) and a swap disk (MB), 0: none. Claims count
    #: all three (repository.flavor_resources).
    ephemeral_gb: orm.Mapped[int] = orm.mapped_column(
        default=0, server_default='0')
    swap_mb: orm.Mapped[int] = orm.mapped_column(
        default=0, server_default='0')
    is_public: orm.Mapped[bool] = orm.mapped_column(default=True)

    projects: orm.Mapped[list['FlavorProject']] = orm.relationship(
        back_populates='flavor', cascade='all, delete-orphan',
        lazy='selectin')


class FlavorProject(Base):
    """A project allowed to use a private flavor."""
    __tablename__ = 'flavor_projects'
    __table_args__ = (sa.UniqueConstraint('flavor_id', 'project_id'),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    flavor_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey('flavors.id', ondelete='CASCADE'))
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))

    flavor: orm.Mapped[Flavor] = orm.relationship(back_populates='projects')


class Instance(TimestampMixin, Base):
    __tablename__ = 'instances'

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), index=True)
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    host: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('hosts.name'), index=True)
    flavor_id: orm.Mapped[int] = orm.mapped_column(sa.ForeignKey('flavors.id'))
    # Set while a move is under way or awaits confirm/revert, as Nova's
    # instance.old_flavor / instance.new_flavor.
    old_flavor_id: orm.Mapped[Optional[int]] = orm.mapped_column(
        sa.ForeignKey('flavors.id'))
    new_flavor_id: orm.Mapped[Optional[int]] = orm.mapped_column(
        sa.ForeignKey('flavors.id'))
    vm_state: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    task_state: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(32))
    power_state: orm.Mapped[int] = orm.mapped_column(default=0)
    locked: orm.Mapped[bool] = orm.mapped_column(default=False)
    #: Who locked it, as Nova's: 'owner' (a member of its project) or
    #: 'admin' (anyone else); None when unlocked.
    locked_by: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(16))
    #: The uuid of the image it was created from (``images.uuid``); None:
    #: a blank disk. An image is not deleted while an instance names it.
    image_id: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(36), index=True)
    #: Whether it has a config drive (``disk.config``), as Nova's.
    config_drive: orm.Mapped[bool] = orm.mapped_column(
        default=False, server_default='0')


class Image(TimestampMixin, Base):
    """A disk image in the image store (``resize_flows.imagestore``),
    with the kernel and ramdisk it boots by, if any. Its disk's store id
    is its uuid; the kernel's and ramdisk's are their own."""
    __tablename__ = 'images'

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255), unique=True)
    disk_format: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    sha256: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    #: Bytes of the stored file, and of the disk a guest sees.
    size: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    virtual_size: orm.Mapped[int] = orm.mapped_column(sa.BigInteger)
    kernel_id: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(36))
    kernel_sha256: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(64))
    ramdisk_id: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(36))
    ramdisk_sha256: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(64))


class Migration(TimestampMixin, Base):
    __tablename__ = 'migrations'
    __table_args__ = (
        sa.Index('ix_migrations_instance_uuid_status', 'instance_uuid',
                 'status'),
    )

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(36), unique=True)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('instances.uuid'))
    migration_type: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    source_compute: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('hosts.name'))
    # Chosen by the flow's SelectDestination step, so empty at first.
    dest_compute: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.ForeignKey('hosts.name'))
    old_flavor_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey('flavors.id'))
    new_flavor_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey('flavors.id'))
    # vm_state before the move: revert powers the guest on only if ACTIVE.
    old_vm_state: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    status: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    # The flow log's flow detail uuid of the operation now acting on it.
    flow_id: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(36), index=True)


class Allocation(TimestampMixin, Base):
    """Capacity a consumer holds on a host (Placement's allocations).

    The consumer is an instance, or during a move, the migration that holds
    the source host's share (Nova's "migration-based allocations").
    """
    __tablename__ = 'allocations'
    __table_args__ = (sa.UniqueConstraint('consumer_uuid', 'host_id'),)

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    consumer_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), index=True)
    consumer_type: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    host_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey('hosts.id'), index=True)
    vcpus: orm.Mapped[int]
    memory_mb: orm.Mapped[int]
    disk_gb: orm.Mapped[int]


class Port(TimestampMixin, Base):
    """A port of the ``ports`` plugin (:mod:`resize_flows.plugins.ports`):
    a NIC of its instance's guest, with a MAC for its whole life."""
    __tablename__ = 'ports'

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    #: The instance it is attached to; None: none.
    instance_uuid: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(36), index=True)
    mac_address: orm.Mapped[str] = orm.mapped_column(sa.String(17),
                                                     unique=True)


class PortBinding(TimestampMixin, Base):
    """A port's binding to a host, as Neutron's port bindings: during a
    move the port has an INACTIVE binding on one host and an ACTIVE one
    on the other; otherwise one ACTIVE binding, on its instance's host."""
    __tablename__ = 'port_bindings'

    port_id: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('ports.id', ondelete='CASCADE'), primary_key=True)
    host: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('hosts.name'), primary_key=True)
    #: 'ACTIVE' or 'INACTIVE'.
    status: orm.Mapped[str] = orm.mapped_column(sa.String(16))


class Volume(TimestampMixin, Base):
    """A file-backed volume of the ``volumes`` plugin
    (:mod:`resize_flows.plugins.volumes`): one file in the volume
    directory that every host reaches at the same path."""
    __tablename__ = 'volumes'

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    project_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    size_gb: orm.Mapped[int]
    #: 'qcow2' or 'raw'.
    disk_format: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    path: orm.Mapped[str] = orm.mapped_column(sa.String(1024))
    #: 'available', 'in-use'.
    status: orm.Mapped[str] = orm.mapped_column(sa.String(16))


class VolumeAttachment(TimestampMixin, Base):
    """A volume attached to an instance on a host, as Cinder's
    attachments: a move adds the destination's and confirm drops the
    source's; ``connected`` says whether the host's guest has the disk
    now (exactly one attachment of a volume is connected)."""
    __tablename__ = 'volume_attachments'
    __table_args__ = (sa.UniqueConstraint('volume_id', 'host'),)

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    volume_id: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('volumes.id', ondelete='CASCADE'), index=True)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), index=True)
    host: orm.Mapped[str] = orm.mapped_column(sa.ForeignKey('hosts.name'))
    connected: orm.Mapped[bool] = orm.mapped_column(default=False)


class InstanceAction(Base):
    """A user-visible operation on an instance, as Nova's instance_actions."""
    __tablename__ = 'instance_actions'

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    request_id: orm.Mapped[str] = orm.mapped_column(sa.String(64), index=True)
    instance_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.String(36), index=True)
    action: orm.Mapped[str] = orm.mapped_column(sa.String(32))
    project_id: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))
    user_id: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))
    start_time: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, default=utcnow)
    finish_time: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        sa.DateTime)
    message: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))

    events: orm.Mapped[list['InstanceActionEvent']] = orm.relationship(
        back_populates='action', cascade='all, delete-orphan',
        order_by='InstanceActionEvent.id', lazy='selectin')


class InstanceActionEvent(Base):
    """One step of an action: a task of its flow, with its outcome."""
    __tablename__ = 'instance_action_events'

    id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
    action_id: orm.Mapped[int] = orm.mapped_column(
        sa.ForeignKey('instance_actions.id', ondelete='CASCADE'), index=True)
    event: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    start_time: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, default=utcnow)
    finish_time: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        sa.DateTime)
    result: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(32))
    traceback: orm.Mapped[Optional[str]] = orm.mapped_column(sa.Text)
    host: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))

    action: orm.Mapped[InstanceAction] = orm.relationship(
        back_populates='events')


class FlowLease(Base):
    """Who runs a flow, until when.

    The process running a flow holds its lease and renews it; a flow that
    is not finished and has no live lease was interrupted (its process
    died), and only then may another process resume or roll it back.

    ``token`` is the fencing token: it grows each time the lease changes
    hands, and every flow-log write of the holder names it, so a write
    from a process whose lease was taken over matches no row and is
    refused (``flowlog``).
    """
    __tablename__ = 'flow_leases'

    flow_id: orm.Mapped[str] = orm.mapped_column(sa.String(36),
                                                 primary_key=True)
    owner: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    acquired_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, default=utcnow)
    expires_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, index=True)
    token: orm.Mapped[int] = orm.mapped_column(
        sa.BigInteger, nullable=False, server_default='0')


class FlowAbandon(Base):
    """A flow an operator gave up on (``flow abandon``): its status is
    ``abandoned`` from then on, whatever its TaskFlow state, which is left
    as it was with every stored atom (the flow log keeps the story). Who
    abandoned it, when and why."""
    __tablename__ = 'flow_abandons'

    flow_id: orm.Mapped[str] = orm.mapped_column(sa.String(36),
                                                 primary_key=True)
    reason: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    user_id: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))
    project_id: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(255))
    abandoned_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, default=utcnow)


# -- the flow log ------------------------------------------------------------

#: Microseconds on MySQL/MariaDB too (their DATETIME keeps whole seconds by
#: default): flows are listed newest first.
PreciseDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')
#: A JSON document as text (see ``persistence/values.py``): one encoding on
#: every database; LONGTEXT on MySQL, whose TEXT stops at 64 KiB.
JSONText = sa.Text().with_variant(mysql.LONGTEXT(), 'mysql')


class FlowLogBook(Base):
    """A TaskFlow logbook: resize-flows keeps one per flow."""
    __tablename__ = 'flow_logbooks'

    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    name: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))
    meta: orm.Mapped[Optional[str]] = orm.mapped_column(JSONText)
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        PreciseDateTime)
    updated_at: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        PreciseDateTime)


class FlowDetail(Base):
    """A stored flow: its state and meta, (copied out of the meta so
    that listing can use indexes) the operation, instance, migration and
    project it belongs to, and the job it was posted as."""
    __tablename__ = 'flow_details'
    __table_args__ = (
        sa.Index('ix_flow_details_created_at_uuid', 'created_at', 'uuid'),
        sa.Index('ix_flow_details_state_created_at', 'state', 'created_at',
                 'uuid'),
        sa.Index('ix_flow_details_instance_uuid_created_at',
                 'instance_uuid', 'created_at', 'uuid'),
        sa.Index('ix_flow_details_operation_created_at',
                 'operation', 'created_at', 'uuid'),
        sa.Index('ix_flow_details_updated_at', 'updated_at'),
        sa.Index('ix_flow_details_project_id_created_at',
                 'project_id', 'created_at', 'uuid'),
    )

    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    logbook_uuid: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.ForeignKey('flow_logbooks.uuid', ondelete='CASCADE'), index=True)
    name: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))
    state: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(32))
    meta: orm.Mapped[Optional[str]] = orm.mapped_column(JSONText)
    operation: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(32))
    instance_uuid: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(36))
    migration_uuid: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(36))
    #: The project of the flow's server (the target of the flow rules),
    #: kept when the server is deleted.
    project_id: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(255))
    #: The job it was posted as on the jobboard (``jobboard.post_flow``);
    #: None for a flow its own process ran. Never written by TaskFlow.
    job_uuid: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(36))
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        PreciseDateTime)
    updated_at: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        PreciseDateTime)


class FlowAtom(Base):
    """One task (or retry) of a stored flow: state, intention, results,
    failures and meta (progress)."""
    __tablename__ = 'flow_atoms'

    uuid: orm.Mapped[str] = orm.mapped_column(sa.String(64), primary_key=True)
    flow_uuid: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('flow_details.uuid', ondelete='CASCADE'), index=True)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
    atom_type: orm.Mapped[str] = orm.mapped_column(sa.String(16))
    version: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(64))
    state: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(32))
    intention: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(32))
    results: orm.Mapped[Optional[str]] = orm.mapped_column(JSONText)
    failure: orm.Mapped[Optional[str]] = orm.mapped_column(JSONText)
    revert_results: orm.Mapped[Optional[str]] = orm.mapped_column(JSONText)
    revert_failure: orm.Mapped[Optional[str]] = orm.mapped_column(JSONText)
    meta: orm.Mapped[Optional[str]] = orm.mapped_column(JSONText)
    created_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        PreciseDateTime)
    updated_at: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        PreciseDateTime)


class FlowAttempt(Base):
    """How many times conductors claimed a flow's job (``[jobboard]/
    max_attempts``), who last, how the last attempt ended, and, once the
    conductors gave up on it, why (the flow is then ``stuck``)."""
    __tablename__ = 'flow_attempts'

    flow_id: orm.Mapped[str] = orm.mapped_column(
        sa.ForeignKey('flow_details.uuid', ondelete='CASCADE'),
        primary_key=True)
    job_uuid: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(36))
    attempts: orm.Mapped[int] = orm.mapped_column(
        sa.Integer, nullable=False, server_default='0')
    #: The conductor of the last attempt; ``running`` while it has not
    #: said how the attempt ended (it died holding the job, or runs it).
    owner: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))
    running: orm.Mapped[bool] = orm.mapped_column(
        sa.Boolean, nullable=False, default=False)
    last_error: orm.Mapped[Optional[str]] = orm.mapped_column(sa.Text)
    gave_up_at: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        sa.DateTime)
    reason: orm.Mapped[Optional[str]] = orm.mapped_column(sa.Text)
    updated_at: orm.Mapped[Optional[datetime.datetime]] = orm.mapped_column(
        sa.DateTime)


def as_dict(row):
    """A row as a plain dict of its columns (datetimes as ISO text), or
    None: what the record functions hand out, detached from any session."""
    if row is None:
        return None
    out = {}
    for column in row.__table__.columns:
        value = getattr(row, column.key)
        if isinstance(value, datetime.datetime):
            value = timeutils.iso(value)
        out[column.key] = value
    return out


class FlowAbort(Base):
    """An operator's request to abort a move's flow (``server migration
    abort``): whichever process holds the flow sees it at its next safe
    point (``leases.check``) and undoes the flow; the flow's undo ends
    the migration ``cancelled``. Kept after the flow ends, as its story."""
    __tablename__ = 'flow_aborts'

    flow_id: orm.Mapped[str] = orm.mapped_column(sa.String(36),
                                                 primary_key=True)
    requested_at: orm.Mapped[datetime.datetime] = orm.mapped_column(
        sa.DateTime, default=utcnow, nullable=False)
    requested_by: orm.Mapped[Optional[str]] = orm.mapped_column(
        sa.String(255))
    request_id: orm.Mapped[Optional[str]] = orm.mapped_column(sa.String(255))
