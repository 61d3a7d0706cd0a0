"""The crash tests' servers on the shared QEMU hosts (``crash_cloud`` in
conftest.py): :class:`CrashCloud` boots them and removes every trace of
them afterwards (:func:`purge_server`), whatever state a test left.

The reference plugins are enabled on those hosts, in the test process's
CONF and in the config file of its ``resize-flows`` processes; a server
booted with ``devices`` gets a port and a volume, made and removed
through the API as a user does.

With them enabled, every flow of those hosts has the plugins' tasks at
their points (crash points like the others), ``state.capture()`` holds
their records and ``state.leaks()`` their ``audit()``: every port bound
ACTIVE on exactly the host the records name, every attached volume
connected to exactly one guest, on that host.
"""
import contextlib
import uuid as uuidlib

from resize_flows import api
from resize_flows import exception
from resize_flows.persistence import ports as port_records
from resize_flows.persistence import repository
from resize_flows.persistence import volumes as volume_db
from resize_flows import plugins as rf_plugins
from resize_flows import virt

#: The plugins the shared hosts' processes and the test process enable.
PLUGINS = ['ports', 'volumes']

#: The ``[DEFAULT]`` line of the shared hosts' config file.
CONFIG_LINE = 'plugins = %s\n' % ', '.join(PLUGINS)

#: The size (GiB) of a crash test's volume: a sparse qcow2, never copied.
VOLUME_GB = 1


def with_plugins(config):
    """``config`` (an ini file's text) with :data:`CONFIG_LINE` in its
    ``[DEFAULT]`` section."""
    assert config.count('[DEFAULT]\n') == 1, config
    return config.replace('[DEFAULT]\n', '[DEFAULT]\n' + CONFIG_LINE)


def enable(conf):
    """Enable :data:`PLUGINS` in the test process's ``conf``."""
    conf.set_override('plugins', PLUGINS)


def disable(conf):
    conf.clear_override('plugins')


def give_port(ctx, vm):
    """A new port attached to server ``vm`` (a NIC of its guest: live
    when it runs). Returns its id."""
    name = 'cm-port-%s' % uuidlib.uuid4().hex[:8]
    return api.create_port(ctx, name, server=vm)['id']


def give_volume(ctx, vm, remember):
    """A new volume attached to server ``vm`` (a virtio disk of its guest:
    live when it runs); ``remember(volume id)`` is called as soon as it
    exists, to be removed after the test even if the attach fails."""
    name = 'cm-vol-%s' % uuidlib.uuid4().hex[:8]
    volume = api.create_volume(ctx, name, VOLUME_GB)
    remember(volume['id'])
    api.attach_volume(ctx, vm, volume['id'])
    return volume['id']


def assert_devices(vm):
    """Server ``vm`` still has the port and the volume :meth:`CrashCloud.
    server` gave it, the port bound ACTIVE on the host its record names
    and the volume connected there. (A port or volume a flow had let go
    of would be no finding of the audits: attached to nothing, it may be
    bound or connected nowhere.)"""
    host = repository.instance_get(vm)['host']
    ports = port_records.instance_ports(vm)
    assert len(ports) == 1, ports
    bindings = port_records.binding_list([ports[0]['id']])
    assert [b['host'] for b in bindings
            if b['status'] == port_records.ACTIVE] == [host], bindings
    assert len(volume_db.connected_volumes(vm, host)) == 1, \
        volume_db.attachment_list(instance_uuid=vm)


def release(instance_uuid):
    """What each enabled plugin holds for an instance that is being
    purged (not deleted through the API), let go as a delete does."""
    inst = repository.instance_list()
    host = {i['uuid']: i['host'] for i in inst}.get(instance_uuid)
    for plugin in rf_plugins.load(rf_plugins.enabled()):
        plugin.instance_deleted(instance_uuid, host)


def remove_devices(ctx, port_ids, volume_ids):
    """Delete the ports and volumes of servers that are gone (their
    delete detached them); any may be gone already."""
    for port_id in port_ids:
        with contextlib.suppress(exception.PortNotFound):
            api.delete_port(ctx, port_id)
    for volume_id in volume_ids:
        with contextlib.suppress(exception.VolumeNotFound):
            api.delete_volume(ctx, volume_id)


def purge_server(uuid):
    """Remove every trace of an instance, whatever state a test left it
    in: its domains and directories on every host, the allocations of
    its migrations and itself, and its records (the plugins let go of
    what they hold for it first)."""
    for host in repository.host_list():
        drv = virt.get_driver(host)
        drv.destroy(uuid, destroy_disks=True)
        for entry in drv.list_instance_dirs():
            if entry.startswith(uuid):
                drv.remove_instance_dir(uuid, entry[len(uuid):])
    for mig in repository.migration_list(uuid):
        repository.release(mig['uuid'])
    release(uuid)
    repository.instance_destroy(uuid)


class CrashCloud:
    """The shared hosts, seen from the test process too: ``CONF`` points at
    their state and database, with their plugins. :meth:`server` boots a
    server that is removed after the test (with ``devices``, a port and
    a volume of its own, removed after it)."""

    def __init__(self, hosts, image):
        self.hosts = hosts
        self.image = image
        self.cli = hosts.cli
        self.cli_ok = hosts.cli_ok
        self.servers = []
        self.ports, self.volumes = [], []

    @property
    def ctx(self):
        return api.get_admin_context()

    def server(self, flavor='tiny', host='host1', power_on=True,
               devices=False):
        name = 'cm-%s' % uuidlib.uuid4().hex[:8]
        inst = api.create_server(self.ctx, name, flavor, host,
                                 power_on=power_on, image=self.image,
                                 config_drive=True)
        self.servers.append(inst['uuid'])
        if devices:
            self.ports.append(give_port(self.ctx, inst['uuid']))
            give_volume(self.ctx, inst['uuid'], self.volumes.append)
        return inst['uuid']

    def cleanup(self):
        for uuid in self.servers:
            try:
                api.delete_server(self.ctx, uuid)
            except Exception:       # a RESIZED one is confirmed first
                pass
            purge_server(uuid)
        remove_devices(self.ctx, self.ports, self.volumes)
        self.servers, self.ports, self.volumes = [], [], []
