"""The libvirt implementation of the :class:`ComputeDriver` interface.

One :class:`LibvirtDriver` acts on one host: a libvirt URI (a local session
daemon ``qemu+unix:///session?socket=...``, libvirt's test driver
``test:///<node.xml>``, or any URI libvirt opens) and an instances path on
this machine. The domain of an instance is named ``instance-<uuid>`` and
has the instance's uuid; its XML is built in :mod:`.config` and kept in
``<uuid>/libvirt.xml`` beside the qcow2 ``disk``. Disks are handled with
qemu-img (:mod:`.disk`), so they are real files on both kinds of host.

Every libvirt error is translated here: a missing domain is
``InstanceNotFoundOnHost``, a lost daemon ``HypervisorConnectionLost`` (a
``HypervisorUnavailable``), the rest ``HypervisorError`` or the power/disk
error of the step. A call that lost its connection (the daemon restarted)
reconnects and runs again, a bounded number of times (:mod:`.errors`).

When this process is root, what the driver creates (directories, disks,
``libvirt.xml``) is given to the owner of the instances path, which is the
user QEMU runs as on a local session host.
"""
import logging
import posixpath
import time
import uuid as uuid_lib
import xml.etree.ElementTree as ET

import libvirt

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import states
from resize_flows.virt import driver
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import errors
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import host as libvirt_host
from resize_flows.virt.libvirt import instancedir
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import migration
from resize_flows.virt.libvirt import plugdevices
from resize_flows.virt.libvirt import shutdown

LOG = logging.getLogger(__name__)

# libvirt domain state -> Nova power state (as Nova's libvirt driver maps).
LIBVIRT_POWER_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: states.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: states.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: states.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: states.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: states.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: states.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: states.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: states.SUSPENDED,
}

_UNDEFINE_FLAGS = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                   | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


class LibvirtDriver(driver.ComputeDriver):
    """Acts on the hypervisor at ``uri`` and the directories under
    ``instances_path`` of the host ``host``: on this machine, or on the
    machine at the ssh address ``ssh`` (:mod:`.files`)."""

    def __init__(self, host, uri, instances_path, ssh=None):
        self.host = host
        self.uri = uri
        self.ssh = ssh or None
        self.files = host_files.for_host(host, instances_path, self.ssh)
        self.instances_path = self.files.instances_path

    def __repr__(self):
        return '<LibvirtDriver %s %s%s>' % (
            self.host, self.uri, ' ssh %s' % self.ssh if self.ssh else '')

    # -- plumbing -------------------------------------------------------
    @property
    def _conn(self):
        return libvirt_host.get_connection(self.uri, self.host)

    @property
    def _domain_type(self):
        if libvirt_host.is_test_uri(self.uri):
            return 'test'
        return CONF.libvirt.domain_type

    def _translate(self, instance_uuid=None, error=None):
        return errors.translate(self, instance_uuid, error)

    def _find(self, instance_uuid):
        """The domain of the instance, or None."""
        with self._translate():
            try:
                return self._conn.lookupByUUIDString(instance_uuid)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return None
                raise

    def _lookup(self, instance_uuid):
        dom = self._find(instance_uuid)
        if dom is None:
            raise exception.InstanceNotFoundOnHost(
                instance_uuid=instance_uuid, host=self.host)
        return dom

    def _ensure_instances_path(self):
        if not self.files.has_root():
            raise exception.HypervisorUnavailable(
                host=self.host, reason='instances path %s does not exist'
                % self.instances_path)

    def _disk_path(self, instance_uuid, suffix=''):
        return posixpath.join(self.instance_dir(instance_uuid, suffix),
                              layout.DISK)

    def _xml_path(self, dirname):
        return posixpath.join(self.instances_path, dirname, layout.DOMAIN_XML)

    def _disk_info(self, path):
        return self.files.disk_info(path)

    def _write_xml(self, instance, flavor, plugin_devices=None):
        """Write ``<uuid>/libvirt.xml`` for ``flavor``, the files the
        directory holds and the plugins' devices; return the XML."""
        instance_uuid = instance['uuid']
        folder = self.instance_dir(instance_uuid)
        xml = config.domain_xml(
            instance_uuid, flavor['vcpus'], flavor['memory_mb'], folder,
            self._domain_type, title=instance.get('name'),
            present=instancedir.present(self.files, folder),
            plugin_devices=plugin_devices)
        self.files.write_atomic(self._xml_path(instance_uuid), xml)
        return xml

    def _summary(self, xml):
        try:
            return config.summary(xml)
        except (ET.ParseError, AttributeError, KeyError, TypeError,
                ValueError) as exc:
            raise exception.HypervisorError(
                host=self.host, reason='unusable domain XML: %s' % exc)

    def _read_xml(self, xml_path):
        try:
            return self.files.read_text(xml_path)
        except OSError as exc:
            raise exception.HypervisorError(
                host=self.host, reason='cannot read the domain XML %s: %s'
                % (xml_path, exc))

    def _define(self, instance_uuid, xml):
        with self._translate(instance_uuid):
            self._conn.defineXML(xml)

    def _undefine(self, dom):
        try:
            dom.undefineFlags(_UNDEFINE_FLAGS)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            if code in errors.ALREADY:
                return
            if code not in (libvirt.VIR_ERR_INVALID_ARG,
                            libvirt.VIR_ERR_NO_SUPPORT):
                raise
            try:
                dom.undefine()
            except libvirt.libvirtError as exc2:
                if exc2.get_error_code() not in errors.ALREADY:
                    raise

    def _hard_stop(self, instance_uuid, dom):
        """Destroy (pull the plug on) a domain; not running is fine."""
        def failed(reason):
            return exception.InstancePowerOffFailure(
                instance_uuid=instance_uuid, reason=reason)
        with self._translate(instance_uuid, error=failed):
            try:
                dom.destroy()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in errors.ALREADY:
                    raise
            if dom.isActive():
                raise failed('still running after destroy')

    # -- guests ---------------------------------------------------------
    @errors.reconnecting
    def spawn(self, instance, flavor, power_on=True, image=None,
              config_drive=False, plugin_devices=None):
        """Lay out ``<uuid>/`` (:func:`.instancedir.build`: the root disk,
        an overlay on ``image``'s cached base or blank, ephemeral, swap,
        config drive, kernel, ramdisk, disk.info), write ``libvirt.xml``,
        define the domain; start it if ``power_on``. Again on the same
        instance and flavor finishes what is missing; a domain or disk of
        another size is ``InstanceExistsOnHost``."""
        instance_uuid = _check_uuid(instance['uuid'])
        self._ensure_instances_path()
        dom = self._find(instance_uuid)
        if dom is not None:
            with self._translate(instance_uuid):
                _uuid, vcpus, memory_mb, _path = self._summary(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if (vcpus, memory_mb) != (flavor['vcpus'], flavor['memory_mb']):
                raise exception.InstanceExistsOnHost(
                    instance_uuid=instance_uuid, host=self.host)
        folder = self.instance_dir(instance_uuid)
        self.files.makedir(folder)
        instancedir.build(self.files, folder, instance, flavor, image,
                          config_drive)
        self._define(instance_uuid, self._write_xml(instance, flavor,
                                                    plugin_devices))
        if power_on:
            self.power_on(instance_uuid)

    @errors.reconnecting
    def destroy(self, instance_uuid, destroy_disks=True):
        """Power off hard and undefine the domain; with ``destroy_disks``
        remove ``<uuid>/`` too (never ``<uuid>_resize``)."""
        dom = self._find(instance_uuid)
        if dom is not None:
            self._hard_stop(instance_uuid, dom)
            with self._translate():
                self._undefine(dom)
        if destroy_disks:
            self.remove_instance_dir(instance_uuid)

    @errors.reconnecting
    def power_off(self, instance_uuid, timeout=0):
        """ACPI power button for up to ``timeout`` seconds, pressed again
        every ``[compute]/shutdown_retry_interval``, then destroy.
        Returns True if the guest was running (or paused)."""
        dom = self._lookup(instance_uuid)
        with self._translate(instance_uuid):
            if not dom.isActive():
                return False
            if timeout and timeout > 0:
                shutdown.clean_shutdown(
                    dom, timeout, CONF.compute.shutdown_retry_interval,
                    CONF.compute.power_poll_interval)
        self._hard_stop(instance_uuid, dom)
        return True

    @errors.reconnecting
    def power_on(self, instance_uuid):
        """Start (or resume) the guest and wait for RUNNING, at most
        ``[compute]/running_wait_timeout`` seconds."""
        dom = self._lookup(instance_uuid)

        def failed(reason):
            return exception.InstancePowerOnFailure(
                instance_uuid=instance_uuid, reason=reason)

        with self._translate(instance_uuid, error=failed):
            state = dom.state()[0]
            if state == libvirt.VIR_DOMAIN_RUNNING:
                return
            if state == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            elif state == libvirt.VIR_DOMAIN_PMSUSPENDED:
                dom.pMWakeup()
            else:
                if dom.isActive():     # shutting down or crashed
                    self._hard_stop(instance_uuid, dom)
                dom.create()
            deadline = time.monotonic() + CONF.compute.running_wait_timeout
            while dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
                if time.monotonic() > deadline:
                    raise failed('not running after %ss (state %s)' % (
                        CONF.compute.running_wait_timeout, dom.state()[0]))
                time.sleep(CONF.compute.power_poll_interval)

    @errors.reconnecting
    def get_info(self, instance_uuid):
        dom = self._lookup(instance_uuid)
        with self._translate(instance_uuid):
            state, max_mem_kib, _mem, vcpus, _cpu_time = dom.info()
        return driver.InstanceInfo(
            power_state=LIBVIRT_POWER_STATE.get(state, states.NOSTATE),
            vcpus=vcpus, memory_mb=max_mem_kib // 1024)

    @errors.reconnecting
    def instance_exists(self, instance_uuid):
        return self._find(instance_uuid) is not None

    @errors.reconnecting
    def list_instance_uuids(self):
        with self._translate():
            return sorted(dom.UUIDString()
                          for dom in self._conn.listAllDomains(0))

    @errors.reconnecting
    def ensure_defined(self, instance_uuid, dirname=None):
        """Define the domain from ``<dirname or uuid>/libvirt.xml`` unless
        it is defined with the same uuid, vcpus, memory and disk already.
        Returns True if it (re)defined it."""
        xml_path = self._xml_path(dirname or instance_uuid)
        xml = self._read_xml(xml_path)
        wanted = self._summary(xml)
        if wanted[0] != instance_uuid:
            raise exception.InvalidInput(
                reason='%s is the domain of %s, not %s'
                       % (xml_path, wanted[0], instance_uuid))
        dom = self._find(instance_uuid)
        if dom is not None:
            with self._translate(instance_uuid):
                current = self._summary(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            if current == wanted:
                return False
        self._define(instance_uuid, xml)
        return True

    # -- directories and disks -----------------------------------------
    def instance_dir(self, instance_uuid, suffix=''):
        return posixpath.join(self.instances_path,
                              _check_uuid(instance_uuid) + suffix)

    def disk_info(self, instance_uuid, suffix=''):
        path = self._disk_path(instance_uuid, suffix)
        data = self._disk_info(path)
        if data is None:
            return None
        return driver.DiskInfo(
            path=path, virtual_size=data['virtual-size'],
            actual_size=data.get('actual-size', 0),
            snapshots=tuple(s['name'] for s in data.get('snapshots', ())))

    def list_instance_dirs(self):
        return self.files.listdir(self.instances_path)

    # -- resize / cold migrate -----------------------------------------
    @errors.reconnecting
    def stash_for_resize(self, instance_uuid, snapshot_name):
        """Snapshot ``<uuid>/disk`` and ``disk.local`` as
        ``snapshot_name``, then rename ``<uuid>`` to ``<uuid>_resize``.
        The guest must be off. Done already (``<uuid>_resize`` holds the
        snapshots) returns at once, even when ``<uuid>`` exists again (a
        same-host copy)."""
        stashed = self.instance_dir(instance_uuid, driver.RESIZE_SUFFIX)
        if self.files.isdir(stashed):
            if not all(migration.has_snapshots(self.files, stashed,
                                               snapshot_name)):
                self._check_off(instance_uuid)
                migration.take_snapshots(self.files, stashed, snapshot_name)
            return
        path = self._disk_path(instance_uuid)
        if not self.files.exists(path):
            raise exception.InstanceDirectoryConflict(
                path=self.instance_dir(instance_uuid), host=self.host,
                reason='no disk to stash for a resize')
        self._check_off(instance_uuid)
        migration.take_snapshots(self.files, self.instance_dir(instance_uuid),
                                 snapshot_name)
        self.rename_instance_dir(instance_uuid, '', driver.RESIZE_SUFFIX)

    def _check_off(self, instance_uuid):
        dom = self._find(instance_uuid)
        if dom is None:
            return
        with self._translate(instance_uuid):
            active = dom.isActive()
        if active:
            raise exception.HypervisorError(
                host=self.host, reason='instance %s is running: power it '
                'off before its disk is stashed' % instance_uuid)

    @errors.reconnecting
    def unstash_after_failed_resize(self, instance_uuid, snapshot_name):
        """Rename ``<uuid>_resize`` back to ``<uuid>`` (a copy left in
        ``<uuid>`` on the same host must be removed first: both existing
        is ``InstanceDirectoryConflict``), delete the snapshot and define
        the domain from its ``libvirt.xml``. Does not power on."""
        self.rename_instance_dir(instance_uuid, driver.RESIZE_SUFFIX, '')
        migration.drop_snapshots(self.files, self.instance_dir(instance_uuid),
                                 snapshot_name)
        self.ensure_defined(instance_uuid)

    def copy_disk_to(self, instance_uuid, dest, progress=None, image=None):
        """Copy the stashed ``<uuid>_resize/`` whole to ``<uuid>/`` of
        ``dest`` (:func:`.migration.copy_instance_dir`: every file, the
        backing files made sure of in ``dest``'s cache, from this host's
        cache or the store file of ``image``), resuming a copy that was
        cut off; ``progress(fraction)`` is called as it goes."""
        migration.copy_instance_dir(self, dest, instance_uuid,
                                    progress=progress, image=image)
        return dest.disk_info(instance_uuid)

    def rename_instance_dir(self, instance_uuid, old_suffix, new_suffix):
        old = self.instance_dir(instance_uuid, old_suffix)
        new = self.instance_dir(instance_uuid, new_suffix)
        has_old, has_new = self.files.exists(old), self.files.exists(new)
        if has_old and not has_new:
            self.files.rename(old, new)
        elif has_new and not has_old:
            return
        else:
            raise exception.InstanceDirectoryConflict(
                path=old, host=self.host,
                reason=('cannot rename it to %s: both exist' % new)
                if has_old else ('neither it nor %s exists' % new))

    def remove_instance_dir(self, instance_uuid, suffix=''):
        self.files.rmtree(self.instance_dir(instance_uuid, suffix))

    @errors.reconnecting
    def finish_migration(self, instance, flavor, snapshot_name, power_on,
                         plugin_devices=None):
        """On the destination, with ``<uuid>/`` copied: the disks for
        ``flavor`` (:func:`.migration.finish_disks`: snapshot dropped,
        root and ephemeral grown, never shrunk, swap made again at its
        new size), ``disk.info`` and ``libvirt.xml`` (with the plugins'
        devices) written, the domain defined, started if ``power_on``."""
        instance_uuid = _check_uuid(instance['uuid'])
        migration.finish_disks(self.files, self.instance_dir(instance_uuid),
                               flavor, snapshot_name, instance_uuid)
        self._define(instance_uuid, self._write_xml(instance, flavor,
                                                    plugin_devices))
        if power_on:
            self.power_on(instance_uuid)

    @errors.reconnecting
    def confirm_migration(self, instance_uuid, snapshot_name, host_changed):
        """Undefine the source domain if the host changed, then delete
        ``<uuid>_resize`` (the snapshot lives in its disk and goes with
        it)."""
        if host_changed:
            dom = self._find(instance_uuid)
            if dom is not None:
                self._hard_stop(instance_uuid, dom)
                with self._translate():
                    self._undefine(dom)
        self.remove_instance_dir(instance_uuid, driver.RESIZE_SUFFIX)

    @errors.reconnecting
    def finish_revert_migration(self, instance, snapshot_name, power_on):
        """Rename ``<uuid>_resize`` back, roll ``disk`` and ``disk.local``
        back to ``snapshot_name`` and delete it (swap and config drive
        stay as they were), define the domain from the old
        ``libvirt.xml``, start it if ``power_on``. On the same host the
        destination's ``<uuid>`` must have been set aside first
        (``<uuid>_revert``). A running domain that is not the one of
        ``libvirt.xml`` (the destination's, on the same host) is powered
        off hard."""
        instance_uuid = _check_uuid(instance['uuid'])
        self.rename_instance_dir(instance_uuid, driver.RESIZE_SUFFIX, '')
        wanted = self._summary(
            self._read_xml(self._xml_path(instance_uuid)))
        dom = self._find(instance_uuid)
        if dom is not None:
            with self._translate(instance_uuid):
                live = dom.isActive() and self._summary(dom.XMLDesc(0))
            if live and live != wanted:
                self._hard_stop(instance_uuid, dom)
        folder = self.instance_dir(instance_uuid)
        if any(migration.has_snapshots(self.files, folder, snapshot_name)):
            self._check_off(instance_uuid)
            migration.drop_snapshots(self.files, folder, snapshot_name,
                                     roll_back=True)
        self.ensure_defined(instance_uuid)
        if power_on:
            self.power_on(instance_uuid)

    @errors.reconnecting
    def update_devices(self, instance_uuid, plugin, devices, suffix=''):
        instance_uuid = _check_uuid(instance_uuid)
        xml_path = self._xml_path(instance_uuid + suffix)
        xml, removed, added = plugdevices.replace(
            self.host, self._read_xml(xml_path), plugin, devices,
            self._domain_type, xml_path)
        if removed or added:
            self.files.write_atomic(xml_path, xml)
        # The domain is brought to the file even when the file said so
        # already: a process killed between the two left it behind.
        dom = self._find(instance_uuid)
        kept = []
        if dom is not None:
            with self._translate(instance_uuid):
                defined = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                # The domain defined from this file (a stashed source's
                # too): not the other one of a resize on one host.
                if self._summary(defined) == self._summary(xml):
                    # libvirt's test driver has no live attach/detach.
                    if dom.isActive() and self._domain_type != 'test':
                        kept = plugdevices.change_live(
                            self.host, dom, plugin, devices, xml_path,
                            defined)
                    if plugdevices.differs(self.host, defined, plugin,
                                           devices, xml_path):
                        self._conn.defineXML(xml)
        ids = (lambda els: [config.alias_id(el) for el in els])
        return ids(added), ids(removed), kept

    def instances_path_ready(self):
        return self.files.has_root()

    def get_console_output(self, instance_uuid):
        path = posixpath.join(self.instance_dir(instance_uuid),
                              layout.CONSOLE_LOG)
        if not self.files.exists(path):
            return ''
        return self.files.read_tail(
            path, CONF.compute.console_output_max_bytes).decode(
                'utf-8', 'replace')


def _check_uuid(value):
    """``value`` if it is a uuid string (it becomes a path and a name)."""
    try:
        if str(uuid_lib.UUID(value)) == value.lower():
            return value
    except (TypeError, ValueError, AttributeError):
        pass
    raise exception.InvalidInput(reason='%r is not an instance uuid'
                                 % (value,))
