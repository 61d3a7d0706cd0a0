"""The ``ports`` reference plugin: Neutron-like ports and port bindings.

A port (:mod:`resize_flows.persistence.ports`) is a NIC of the guest of
the instance it is attached to, with the same MAC on every host. A port
of an instance at rest has one binding, ACTIVE, on the instance's host.
A move (Nova's ``migrate_instance_start`` / ``migrate_instance_finish``
with Neutron's multiple port bindings) goes:

- resize/migrate, before the source powers off (:class:`BindDestination`):
  an INACTIVE binding on the destination (nothing on a resize to the same
  host);
- resize/migrate, before the destination's guest is defined
  (:class:`ActivateDestination`): the destination's binding ACTIVE, the
  source's INACTIVE;
- confirm (:class:`RemoveSourceBinding`): the source's binding removed;
- revert, before the source is restored (:class:`RestoreSourceBinding`):
  the source's binding ACTIVE again, the destination's removed.

Each task changes every port of the instance in one transaction, sets
the same values when it runs again, and its revert puts back what the
task before it left. Ports cannot be attached or detached while the
instance has a task under way or is RESIZED, so the set of ports is the
same from one step of a move to the next.
"""
import xml.etree.ElementTree as ET

import libvirt

from resize_flows.persistence import ports as port_records
from resize_flows.persistence import repository
from resize_flows import plugins
from resize_flows import states
from resize_flows.tasks import base
from resize_flows.virt.libvirt import config as libvirt_config
from resize_flows.virt.libvirt import host as libvirt_host

NAME = 'ports'
ACTIVE = port_records.ACTIVE
INACTIVE = port_records.INACTIVE


def interfaces(instance_uuid):
    """The interface devices of an instance's ports (oldest first)."""
    return [{'type': 'interface', 'id': p['id'], 'mac': p['mac_address']}
            for p in port_records.instance_ports(instance_uuid)]


def update_guest(instance_uuid, host):
    """Give the guest of ``instance_uuid`` on ``host`` (its
    ``libvirt.xml``, its domain, live on a running QEMU guest) exactly
    the NICs of its ports now; returns ``(added, removed, kept)`` port
    ids (kept: NICs a running guest did not let go)."""
    drv = base.ResizeFlowsTask.driver(host)
    return drv.update_devices(instance_uuid, NAME, interfaces(instance_uuid))


def _move(migration_uuid):
    """(instance uuid, source host, destination host) of a migration."""
    mig = repository.migration_get(migration_uuid)
    return mig['instance_uuid'], mig['source_compute'], mig['dest_compute']


class BindDestination(base.ResizeFlowsTask):
    """Before the source powers off: every port of the instance gets an
    INACTIVE binding on the destination (Nova's port binding on the
    destination in prep_resize); none on a resize to the same host.

    Reversion strategy: remove the destination's bindings (they exist
    only for this move: a port of an instance at rest is bound on its
    host only).
    """

    def execute(self, migration_uuid, dest_host):
        uuid, source, _dest = _move(migration_uuid)
        if dest_host != source:
            port_records.set_bindings(uuid, {dest_host: INACTIVE})

    def revert(self, migration_uuid, dest_host, **kwargs):
        uuid, source, _dest = _move(migration_uuid)
        if dest_host != source:
            port_records.set_bindings(uuid, {dest_host: None})


class ActivateDestination(base.ResizeFlowsTask):
    """Before the destination's guest is defined: the destination's
    bindings ACTIVE, the source's INACTIVE (Nova's
    migrate_instance_finish: Neutron's binding activation).

    Reversion strategy: the source's bindings ACTIVE again, the
    destination's INACTIVE (BindDestination's revert removes them).
    """

    def execute(self, migration_uuid, dest_host):
        uuid, source, _dest = _move(migration_uuid)
        if dest_host != source:
            port_records.set_bindings(uuid, {dest_host: ACTIVE,
                                             source: INACTIVE})

    def revert(self, migration_uuid, dest_host, **kwargs):
        uuid, source, _dest = _move(migration_uuid)
        if dest_host != source:
            port_records.set_bindings(uuid, {dest_host: INACTIVE,
                                             source: ACTIVE})


class RemoveSourceBinding(base.ResizeFlowsTask):
    """Confirm: the source's (INACTIVE) bindings are removed (Nova's
    confirm_resize: delete the source's port bindings).

    Reversion strategy: make them again, INACTIVE, as a finished move has
    them.
    """

    def execute(self, migration_uuid):
        uuid, source, dest = _move(migration_uuid)
        if dest != source:
            port_records.set_bindings(uuid, {source: None})

    def revert(self, migration_uuid, **kwargs):
        uuid, source, dest = _move(migration_uuid)
        if dest != source:
            port_records.set_bindings(uuid, {source: INACTIVE})


class RestoreSourceBinding(base.ResizeFlowsTask):
    """Revert, before the source is restored: the source's bindings
    ACTIVE again and the destination's removed (Nova's
    finish_revert_resize: bindings back on the source).

    Reversion strategy: the destination's bindings ACTIVE again (made if
    gone), the source's INACTIVE, as a finished move has them.
    """

    def execute(self, migration_uuid):
        uuid, source, dest = _move(migration_uuid)
        if dest != source:
            port_records.set_bindings(uuid, {source: ACTIVE, dest: None})

    def revert(self, migration_uuid, **kwargs):
        uuid, source, dest = _move(migration_uuid)
        if dest != source:
            port_records.set_bindings(uuid, {dest: ACTIVE,
                                             source: INACTIVE})


_TASKS = {
    plugins.BEFORE_SOURCE_POWER_OFF: (BindDestination,),
    plugins.BEFORE_DEST_DEFINE: (ActivateDestination,),
    plugins.CONFIRM_SOURCE_CLEANUP: (RemoveSourceBinding,),
    plugins.BEFORE_SOURCE_RESTORE: (RestoreSourceBinding,),
}


class PortsPlugin(plugins.Plugin):
    """Ports as NICs of their instance's guest, bound where it runs."""

    name = NAME

    def tasks(self, operation, point):
        return [cls(name=plugins.atom_name(self.name, cls))
                for cls in _TASKS.get(point, ())]

    def domain_devices(self, instance_uuid, host):
        return interfaces(instance_uuid)

    def instance_deleted(self, instance_uuid, host):
        port_records.release_instance(instance_uuid)

    def state(self):
        return {
            'ports': {p['id']: (p['name'], p['project_id'],
                                p['instance_uuid'], p['mac_address'])
                      for p in port_records.port_list()},
            'bindings': sorted((b['port_id'], b['host'], b['status'])
                               for b in port_records.binding_list()),
        }

    def audit(self):
        return audit()


def audit():
    """What is wrong in the ports' records, one line per finding (see
    :meth:`.Plugin.audit`): at rest a port of an instance has exactly one
    ACTIVE binding, on the host the instance's record names, and no
    binding elsewhere; while a move of the instance is unfinished, its
    source and destination may have bindings too, and while the move is
    under way (not yet ``finished``) either may be the ACTIVE one. A
    detached port has no binding. And the guest of an instance at rest
    (or RESIZED) has exactly its ports' NICs, with their MACs, in the
    domain its host's hypervisor holds."""
    problems = []
    instances = {i['uuid']: i for i in repository.instance_list()}
    moves = {m['instance_uuid']: m for m in repository.migration_list()
             if m['status'] not in states.MIGRATION_TERMINAL}
    problems.extend(_guest_problems(instances, moves))
    bound = {}
    for b in port_records.binding_list():
        bound.setdefault(b['port_id'], []).append((b['host'], b['status']))
    for port in port_records.port_list():
        pid, uuid = port['id'], port['instance_uuid']
        hosts = bound.get(pid, [])
        if uuid is None:
            if hosts:
                problems.append('port %s is attached to nothing but bound '
                                'on %s' % (pid, _hosts(hosts)))
            continue
        inst = instances.get(uuid)
        if inst is None:
            problems.append('port %s is attached to instance %s, which '
                            'does not exist' % (pid, uuid))
            continue
        active = sorted(h for h, status in hosts if status == ACTIVE)
        move = moves.get(uuid)
        moving = {move['source_compute'], move['dest_compute']} \
            if move is not None else set()
        under_way = move is not None and \
            move['status'] != states.MIGRATION_FINISHED
        if not active:
            problems.append('port %s of instance %s has no ACTIVE binding'
                            % (pid, uuid))
        elif len(active) > 1:
            problems.append('port %s of instance %s is ACTIVE on more than '
                            'one host: %s' % (pid, uuid, ', '.join(active)))
        allowed = {inst['host']} | (moving if under_way else set())
        for host in active:
            if host not in allowed:
                problems.append('port %s is bound ACTIVE on %s, but its '
                                'instance %s lives on %s' % (
                                    pid, host, uuid, inst['host']))
        for host, status in hosts:
            if host not in {inst['host']} | moving:
                problems.append('port %s has a binding (%s) on %s, where '
                                'its instance %s is not' % (
                                    pid, status, host, uuid))
    return problems


#: The states in which an instance's guest is defined on its host as its
#: records say (no task under way).
_AT_REST = (states.ACTIVE, states.STOPPED, states.RESIZED)


def _guest_problems(instances, moves):
    """An instance at rest whose domain on its host lacks a port's NIC,
    or has one of a port it no longer has, or with another MAC."""
    problems = []
    want = {}
    for port in port_records.port_list():
        if port['instance_uuid'] is not None:
            want.setdefault(port['instance_uuid'], set()).add(
                (port['id'], port['mac_address']))
    for uuid, inst in sorted(instances.items()):
        move = moves.get(uuid)
        if (inst['task_state'] is not None or inst['vm_state'] not in
                _AT_REST or (move is not None and
                             move['status'] != states.MIGRATION_FINISHED)):
            continue
        has = _guest_nics(inst['host'], uuid)
        if has is not None and has != want.get(uuid, set()):
            problems.append(
                'the guest of instance %s on %s has the NICs %s, its ports '
                'say %s' % (uuid, inst['host'], _nics(has),
                            _nics(want.get(uuid, set()))))
    return problems


def _guest_nics(host_name, instance_uuid):
    """``{(port id, mac)}`` of this plugin's NICs in the domain of
    ``instance_uuid`` that the hypervisor of ``host_name`` holds (its
    definition); None when it has no such domain (``testing.state.
    leaks`` tells that)."""
    host = repository.host_get(host_name)
    conn = libvirt_host.get_connection(host['uri'], host_name)
    try:
        xml = conn.lookupByUUIDString(instance_uuid).XMLDesc(
            libvirt.VIR_DOMAIN_XML_INACTIVE)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
    try:
        found = libvirt_config.plugin_devices(xml).get(NAME, [])
    except ET.ParseError:
        return None
    return {(d['id'], d['mac']) for d in found if d['type'] == 'interface'}


def _nics(pairs):
    return '[%s]' % ', '.join('%s %s' % p for p in sorted(pairs))


def _hosts(bindings):
    return ', '.join('%s (%s)' % b for b in sorted(bindings))
