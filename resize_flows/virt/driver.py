"""The hypervisor driver interface, in Nova's verbs.

One driver object acts on one host: its hypervisor (a libvirt URI) and its
instances path. An instance lives in ``<instances_path>/<uuid>/`` laid out
as Nova's libvirt driver lays it out (``virt/libvirt/layout.py``: root
``disk``, ``disk.local``, ``disk.swap``, config drive, ``disk.info``,
kernel and ramdisk, ``libvirt.xml``). During a move the source directory
is renamed ``<uuid>_resize`` and keeps the instance's files, with an
internal qcow2 snapshot of the root and ephemeral disks taken for the
resize; confirm deletes it, revert rolls those disks back to the snapshot
and renames the directory back.

Nova's ``migrate_disk_and_power_off`` is here as a whole and as its parts
(``power_off``, ``stash_for_resize``, ``copy_disk_to``), because the flows
run each part as its own revertible task. Every method is idempotent: it
may be called again after a crash that came after its effect, and it
finishes or confirms the effect instead of failing on it.

Arguments are plain values (uuids, ints, dicts) so that the tasks that call
a driver can store them in the flow log.
"""
import abc
import dataclasses

RESIZE_SUFFIX = '_resize'
# Destination files set aside by a revert until the revert is final.
REVERT_SUFFIX = '_revert'


@dataclasses.dataclass(frozen=True)
class InstanceInfo:
    """What the hypervisor says about one guest."""
    power_state: int          # resize_flows.states power state number
    vcpus: int
    memory_mb: int


@dataclasses.dataclass(frozen=True)
class DiskInfo:
    """What qemu-img says about an instance's disk."""
    path: str
    virtual_size: int         # bytes
    actual_size: int          # bytes allocated on the host's file system
    snapshots: tuple          # names of the internal snapshots


class ComputeDriver(abc.ABC):
    """Acts on one host's hypervisor and instance directories."""

    #: the host's name, for messages and errors
    host = None
    #: the host's instances path
    instances_path = None

    # -- guests ---------------------------------------------------------
    @abc.abstractmethod
    def spawn(self, instance, flavor, power_on=True, image=None,
              config_drive=False, plugin_devices=None):
        """Create the instance directory as Nova's libvirt driver lays it
        out (:mod:`.libvirt.layout`): a root disk of ``flavor['root_gb']``
        GiB (an overlay on ``image``'s cached base, or blank without an
        image), the ephemeral and swap disks of the flavor, a config drive
        if ``config_drive``, the image's kernel and ramdisk; then its
        domain (vcpus, memory_mb of the flavor), started and waited for
        RUNNING when ``power_on``.

        ``instance`` is ``{'uuid', 'name'}``; ``flavor`` is ``{'name',
        'vcpus', 'memory_mb', 'root_gb', 'ephemeral_gb', 'swap_mb'}`` (the
        last two may be missing: 0); ``image`` is None or what
        ``imagestore.for_driver`` gives (``uuid``, ``sha256``,
        ``disk_format``, ``virtual_size``, ``path``, ``kernel_path``,
        ``ramdisk_path``, ``kernel_sha256``, ``ramdisk_sha256``).
        ``plugin_devices``: ``{plugin: [device]}``, the plugins' devices
        of the domain (:mod:`resize_flows.plugins`).
        """

    @abc.abstractmethod
    def destroy(self, instance_uuid, destroy_disks=True):
        """Power off and undefine the domain; with ``destroy_disks`` remove
        ``<uuid>/`` too. Nothing there is not an error."""

    @abc.abstractmethod
    def power_off(self, instance_uuid, timeout=0):
        """Shut the guest down: ACPI first for up to ``timeout`` seconds,
        then hard. Returns True if it was running. Already off is fine."""

    @abc.abstractmethod
    def power_on(self, instance_uuid):
        """Start the guest and wait for RUNNING (bounded by
        ``[compute]/running_wait_timeout``). Already running is fine."""

    @abc.abstractmethod
    def get_info(self, instance_uuid):
        """:class:`InstanceInfo` of the guest; ``InstanceNotFoundOnHost``
        when it has no domain here."""

    @abc.abstractmethod
    def instance_exists(self, instance_uuid):
        """Whether a domain for this instance is defined here."""

    @abc.abstractmethod
    def list_instance_uuids(self):
        """Uuids of every domain defined here."""

    @abc.abstractmethod
    def instances_path_ready(self):
        """Whether the host's instances path is there, as a directory, on
        the machine that holds the host's files (this one, or the one at
        the host's ssh address): a host is registered only then."""

    @abc.abstractmethod
    def ensure_defined(self, instance_uuid, dirname=None):
        """(Re)define the domain from ``<dirname or uuid>/libvirt.xml``,
        leaving its power state alone. Returns True if it had to define it.
        """

    # -- directories and disks -----------------------------------------
    @abc.abstractmethod
    def instance_dir(self, instance_uuid, suffix=''):
        """Path of ``<instances_path>/<uuid><suffix>``."""

    @abc.abstractmethod
    def disk_info(self, instance_uuid, suffix=''):
        """:class:`DiskInfo` of ``<uuid><suffix>/disk``, or None if there is
        no such file."""

    @abc.abstractmethod
    def list_instance_dirs(self):
        """Names of the entries of the instances path (for checks)."""

    # -- resize / cold migrate -----------------------------------------
    def migrate_disk_and_power_off(self, instance_uuid, dest, snapshot_name,
                                   timeout=0, image=None):
        """Nova's verb: power off, stash the source, copy the instance
        directory to ``dest`` (another driver, possibly for this same
        host). Returns the destination :class:`DiskInfo`."""
        self.power_off(instance_uuid, timeout)
        self.stash_for_resize(instance_uuid, snapshot_name)
        return self.copy_disk_to(instance_uuid, dest, image=image)

    @abc.abstractmethod
    def stash_for_resize(self, instance_uuid, snapshot_name):
        """The guest is off: take the internal snapshot ``snapshot_name`` of
        ``<uuid>/disk`` and ``<uuid>/disk.local`` (when there) and rename
        ``<uuid>`` to ``<uuid>_resize``."""

    @abc.abstractmethod
    def unstash_after_failed_resize(self, instance_uuid, snapshot_name):
        """Undo :meth:`stash_for_resize`: rename ``<uuid>_resize`` back,
        delete the snapshots, make sure the domain is defined from the
        instance's own ``libvirt.xml``. Does not power on."""

    @abc.abstractmethod
    def copy_disk_to(self, instance_uuid, dest, progress=None, image=None):
        """Copy every file of ``<uuid>_resize/`` of this host into
        ``<uuid>/`` on ``dest`` (sparse, atomically: a partial copy never
        has the final name), the backing files of its overlays made sure
        of in ``dest``'s image cache first (from this host's cache, or the
        store file of ``image``, as ``imagestore.for_driver`` gives it)
        and the overlays pointed at them. A copy cut off by a crash is
        resumed file by file where it stopped, once what it had written
        is checked against the source. ``progress``, if given, is called
        with the fraction of the bytes copied so far (0.0 to 1.0, never
        decreasing). Returns the destination :class:`DiskInfo`."""

    @abc.abstractmethod
    def rename_instance_dir(self, instance_uuid, old_suffix, new_suffix):
        """Rename ``<uuid><old_suffix>`` to ``<uuid><new_suffix>``. Done
        already (only the new one exists) is fine; both or neither existing
        raises ``InstanceDirectoryConflict``."""

    @abc.abstractmethod
    def remove_instance_dir(self, instance_uuid, suffix=''):
        """Delete ``<uuid><suffix>/`` if present."""

    @abc.abstractmethod
    def finish_migration(self, instance, flavor, snapshot_name, power_on,
                         plugin_devices=None):
        """On the destination: drop ``snapshot_name`` from the copied disks,
        grow the disk to ``flavor['root_gb']`` and ``disk.local`` to
        ``flavor['ephemeral_gb']`` (never shrink; made if absent), make
        ``disk.swap`` again when ``flavor['swap_mb']`` changes it, write
        ``disk.info`` and ``libvirt.xml`` with the flavor's vcpus and
        memory and ``plugin_devices`` (as spawn), define the domain, and
        power it on (waiting for RUNNING) if ``power_on``."""

    @abc.abstractmethod
    def update_devices(self, instance_uuid, plugin, devices, suffix=''):
        """Make ``devices`` (a list of device dicts) the devices ``plugin``
        gives the domain of ``<uuid><suffix>/libvirt.xml``: that file is
        rewritten with them (other plugins' devices and the instance's own
        kept); the domain defined from it (same vcpus, memory and root
        disk: a stashed ``<uuid>_resize`` source's too) is defined again,
        and a running one gets the change live too (attach, detach; not
        on libvirt's test driver, which has no live change).
        Returns ``(added, removed, kept)``: the device ids the file
        gained and lost (none when it said so already), and those a
        running guest did not let go (a live detach waits for the guest
        to acknowledge it, re-sent ``[compute]/device_detach_attempts``
        times; the definition no longer has them, the running guest
        keeps them until it stops). The domain is brought to the
        file each time, so a call cut off between the two is finished by
        calling again."""

    @abc.abstractmethod
    def confirm_migration(self, instance_uuid, snapshot_name, host_changed):
        """On the source, after a confirmed move: undefine the source domain
        if the host changed, delete the snapshot, delete ``<uuid>_resize``.
        """

    @abc.abstractmethod
    def finish_revert_migration(self, instance, snapshot_name, power_on):
        """On the source, reverting: rename ``<uuid>_resize`` back to
        ``<uuid>``, roll the root and ephemeral disks back to
        ``snapshot_name`` and delete it (swap and config drive as they
        were),
        define the domain from its ``libvirt.xml`` (the old flavor), and
        power it on (waiting for RUNNING) if ``power_on``."""

    @abc.abstractmethod
    def get_console_output(self, instance_uuid):
        """The text of ``<uuid>/console.log`` (the guest's serial
        console): its last ``[compute]/console_output_max_bytes``, bytes
        that are not UTF-8 replaced; '' when there is none."""
