"""Ports of the ``ports`` plugin: create, list, show, delete; attach one
to a server and detach it.

A port belongs to a project, as Neutron's: a caller who is not an admin
sees only its own project's (another project's port is unknown: 404).
Every check comes before a change. Attaching or detaching needs the
plugin enabled (``[DEFAULT]/plugins``: a move must carry the port's
binding along) and a server with no task under way that is not RESIZED
(409). They hold the server by a task state of their own meanwhile
(``attaching_interface``, ``detaching_interface``:
:mod:`resize_flows.persistence.instance_tasks`), so no move starts in
between, and record an instance action. The records change first, in
one transaction that checks the server again, then the guest
(:func:`.plugins.ports.update_guest`); if the guest cannot be changed the
records are put back.
"""
import logging
import random
import re
import uuid as uuidlib

from resize_flows.api import context
from resize_flows.api import moves
from resize_flows.api import servers
from resize_flows import exception
from resize_flows.persistence import instance_tasks
from resize_flows.persistence import ports as port_records
from resize_flows import plugins as rf_plugins
from resize_flows.plugins import ports as ports_plugin
from resize_flows import policy
from resize_flows import states
from resize_flows.testing import faults
from resize_flows import validation

LOG = logging.getLogger(__name__)

#: The prefix of generated MACs (OpenStack's default base_mac).
MAC_PREFIX = 'fa:16:3e'
_MAC = re.compile(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$')
_MAC_TRIES = 20


def _with_bindings(ports):
    """``ports`` (records), each with its ``bindings``: ``[{'host',
    'status'}]`` by host."""
    found = {}
    for b in port_records.binding_list([p['id'] for p in ports]):
        found.setdefault(b['port_id'], []).append(
            {'host': b['host'], 'status': b['status']})
    return [dict(p, bindings=found.get(p['id'], [])) for p in ports]


def _shown(port_id):
    """A port as the API returns it: its record and its bindings."""
    return _with_bindings([port_records.port_find(port_id)])[0]


def _target(port):
    return {'project_id': port['project_id'], 'user_id': None}


def _check_mac(mac):
    if not isinstance(mac, str) or not _MAC.match(mac.lower()):
        raise exception.InvalidInput(
            reason='a MAC address is six pairs of hex digits separated by '
                   '":", not %r' % (mac,))
    mac = mac.lower()
    if int(mac[:2], 16) & 1:
        raise exception.InvalidInput(
            reason='%s is a multicast address, not a NIC\'s' % mac)
    if mac == '00:00:00:00:00:00':
        raise exception.InvalidInput(reason='%s is not a NIC\'s' % mac)
    return mac


def _new_mac():
    for _ in range(_MAC_TRIES):
        mac = '%s:%02x:%02x:%02x' % ((MAC_PREFIX,) + tuple(
            random.randrange(256) for _ in range(3)))
        if not port_records.mac_in_use(mac):
            return mac
    raise exception.MacAddressInUse(mac='%s:xx:xx:xx (every try)' %
                                    MAC_PREFIX)


def _check_enabled():
    if ports_plugin.NAME not in rf_plugins.enabled():
        raise exception.InvalidInput(
            reason='the ports plugin is not enabled ([DEFAULT]/plugins): '
                   'a port can be attached only where moves carry it')


def _check_server(ctx, inst, method, task_state):
    """Refuse (409) what Nova's interface attach refuses: a locked server
    (but to an admin), an unfinished flow, a task under way (but
    ``task_state``, left by the same command killed midway), a state
    other than ACTIVE or STOPPED (RESIZED among them)."""
    if inst['locked'] and not ctx.is_admin:
        raise exception.InstanceIsLocked(instance_uuid=inst['uuid'])
    moves._refuse_if_unfinished_flow(inst, method)
    if inst['task_state'] not in (None, task_state):
        raise exception.InstanceInvalidState(
            method=method, instance_uuid=inst['uuid'], attr='task_state',
            state=inst['task_state'])
    if inst['vm_state'] not in port_records.CHANGEABLE_VM_STATES:
        raise exception.InstanceInvalidState(
            method=method, instance_uuid=inst['uuid'], attr='vm_state',
            state=inst['vm_state'])


@context.tenant_facing
def get_port(ctx, ident):
    """A port by id or name, in the caller's view: PortNotFound (404).
    Every port the API returns has its record's columns and
    ``bindings``: ``[{'host', 'status'}]``."""
    if not isinstance(ident, str) or not ident:
        raise exception.PortNotFound(port_id=ident)
    project = None if ctx.is_admin else ctx.project_id
    port = port_records.port_find(ident, project_id=project)
    policy.authorize(ctx, policy.PORT_SHOW, _target(port))
    return _with_bindings([port])[0]


@context.tenant_facing
def list_ports(ctx, server=None):
    """The caller's ports (every project's for an admin), or those of
    ``server``."""
    policy.authorize(ctx, policy.PORT_LIST)
    instance_uuid = None
    if server is not None:
        instance_uuid = servers.get_server(ctx, server)['uuid']
    project = None if ctx.is_admin else ctx.project_id
    return _with_bindings(port_records.port_list(
        project_id=project, instance_uuid=instance_uuid))


@context.tenant_facing
def create_port(ctx, name, server=None, mac=None):
    """Create a port in the caller's project with ``mac`` (a unicast
    MAC, unique; by default a new ``fa:16:3e:xx:xx:xx``); with
    ``server``, attached to it at once (every check of
    :func:`attach_port` comes first; if the attach fails, the port is
    gone again). Returns the port."""
    policy.authorize(ctx, policy.PORT_CREATE)
    validation.check_name('port', name)
    if mac is not None:
        mac = _check_mac(mac)
        if port_records.mac_in_use(mac):
            raise exception.MacAddressInUse(mac=mac)
    inst = None
    if server is not None:
        _check_enabled()
        inst = servers.get_server(ctx, server)
        policy.authorize(ctx, policy.PORT_ATTACH, servers.rule_target(inst))
        _check_server(ctx, inst, 'attach_port', states.ATTACHING_INTERFACE)
        if inst['project_id'] != ctx.project_id:
            raise exception.Conflict(
                reason='server %s is of project %s, a new port of %s'
                       % (inst['uuid'], inst['project_id'], ctx.project_id))
    port = port_records.port_create(str(uuidlib.uuid4()), name,
                                    ctx.project_id, mac or _new_mac())
    if inst is None:
        return _shown(port['id'])
    try:
        return _attach(ctx, inst, port)
    except BaseException:
        port_records.port_destroy(port['id'])
        raise


@context.tenant_facing
def delete_port(ctx, ident):
    """Delete a port; refused (PortInUse, 409) while it is attached."""
    port = get_port(ctx, ident)
    policy.authorize(ctx, policy.PORT_DELETE, _target(port))
    port_records.port_destroy(port['id'])


def _attach(ctx, inst, port):
    with instance_tasks.held(ctx, inst['uuid'], states.ATTACHING_INTERFACE,
                             'attach_port', port_records.CHANGEABLE_VM_STATES,
                             inst['host']):
        faults.window('device-held')
        host = port_records.port_attach(port['id'], inst['uuid'])
        try:
            ports_plugin.update_guest(inst['uuid'], host)
        except BaseException:
            port_records.port_detach(port['id'], inst['uuid'],
                                     check_instance=False)
            try:
                ports_plugin.update_guest(inst['uuid'], host)
            except Exception:
                LOG.exception('could not take port %s out of the guest of '
                              '%s again', port['id'], inst['uuid'])
            raise
    return _shown(port['id'])


@context.tenant_facing
def attach_port(ctx, server, port):
    """Attach a port of the server's project that is attached to nothing
    (PortInUse, 409, when it is attached anywhere) to ``server``: bound
    ACTIVE on the server's host, a NIC of its guest (live on a running
    QEMU guest). Returns the port."""
    _check_enabled()
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, policy.PORT_ATTACH, servers.rule_target(inst))
    record = get_port(ctx, port)
    _check_server(ctx, inst, 'attach_port', states.ATTACHING_INTERFACE)
    if record['instance_uuid'] is not None:
        raise exception.PortInUse(port_id=record['id'],
                                  instance_uuid=record['instance_uuid'])
    if record['project_id'] != inst['project_id']:
        raise exception.Conflict(
            reason='port %s is of project %s, server %s of %s' % (
                record['id'], record['project_id'], inst['uuid'],
                inst['project_id']))
    return _attach(ctx, inst, record)


@context.tenant_facing
def detach_port(ctx, server, port):
    """Detach a port from ``server`` (PortNotAttached, 409, when it is
    not attached there): its bindings removed, the NIC taken out of the
    guest. A running guest must acknowledge the unplug: the detach is
    sent again until it does (``[compute]/device_detach_attempts``); one
    that never does keeps the NIC until it stops, while its definition
    and the records no longer have it. Returns the port, with
    ``released`` False in that case."""
    _check_enabled()
    inst = servers.get_server(ctx, server)
    policy.authorize(ctx, policy.PORT_DETACH, servers.rule_target(inst))
    record = get_port(ctx, port)
    _check_server(ctx, inst, 'detach_port', states.DETACHING_INTERFACE)
    if record['instance_uuid'] != inst['uuid']:
        raise exception.PortNotAttached(port_id=record['id'],
                                        instance_uuid=inst['uuid'])
    with instance_tasks.held(ctx, inst['uuid'], states.DETACHING_INTERFACE,
                             'detach_port', port_records.CHANGEABLE_VM_STATES,
                             inst['host']):
        faults.window('device-held')
        port_records.port_detach(record['id'], inst['uuid'])
        try:
            _added, _removed, kept = ports_plugin.update_guest(
                inst['uuid'], inst['host'])
        except BaseException:
            port_records.port_attach(record['id'], inst['uuid'])
            raise
    return dict(_shown(record['id']), released=record['id'] not in kept)
