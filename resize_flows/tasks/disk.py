"""Tasks that move disks between hosts."""
import dataclasses
import time

from resize_flows import deadlines
from resize_flows import imagestore
from resize_flows import leases
from resize_flows.persistence import images
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.tasks import base
from resize_flows.virt import driver as virt_driver


def _image_of(instance_uuid):
    """The instance's image as the driver takes it, or None."""
    image_id = repository.instance_get(instance_uuid).get('image_id')
    if not image_id:
        return None
    return imagestore.for_driver(images.image_find(image_id))


class _Watch:
    """The copy's progress callback: reports a fraction that grew to the
    flow log and restarts the copy's stall deadline
    (``deadlines.moved``), and is a safe point (``leases.check``) at most
    every :data:`CHECK_EVERY` seconds, whose error stops the copy."""

    CHECK_EVERY = 1.0

    def __init__(self, report):
        self.report = report
        self.shown = -1.0
        self.checked = time.monotonic()

    def __call__(self, fraction):
        if fraction > self.shown:
            self.shown = fraction
            deadlines.moved()
            deadlines.in_flow_thread(self.report, fraction)
        now = time.monotonic()
        if now - self.checked >= self.CHECK_EVERY:
            self.checked = now
            leases.check('the disk copy')


class CopyDisk(base.ResizeFlowsTask):
    """Copy the stashed source instance directory, every file of it, into
    ``<uuid>/`` on the destination, the backing files of its disks made
    sure of in the destination's image cache first (sparse; a partial
    copy never has the final name, and one cut off by a crash is resumed
    per file, not restarted). Reports the fraction copied as the
    task's progress in the flow log. The task becomes ``resize_migrated``,
    the migration ``post-migrating``. Provides the copied disk's size and
    allocation.

    Between chunks (and every second of a silent rsync) the copy is at a
    safe point (:class:`_Watch`): an abort or a lost lease stops it
    there (rsync killed); its deadline follows its progress
    (``[flows]/copy_stall_timeout`` with no byte moved).

    Reversion strategy: remove the destination's ``<uuid>`` directory (on
    the same host only while the source is safely in ``<uuid>_resize``)
    and put task and migration back to ``resize_migrating``/``migrating``.
    """

    deadline_follows_progress = True

    def execute(self, migration_uuid, dest_host):
        mig = repository.migration_get(migration_uuid)
        info = self.driver(mig['source_compute']).copy_disk_to(
            mig['instance_uuid'], self.driver(dest_host),
            progress=_Watch(self.update_progress),
            image=_image_of(mig['instance_uuid']))
        # A copy can outlive this process's hold on the flow (a stalled
        # conductor): then the new holder owns the records.
        leases.check('the records after CopyDisk')
        repository.instance_update(mig['instance_uuid'], {
            'task_state': states.RESIZE_MIGRATED})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_POST_MIGRATING})
        out = dataclasses.asdict(info)
        out['snapshots'] = list(out['snapshots'])
        return out

    def revert(self, migration_uuid, dest_host, **kwargs):
        mig = repository.migration_get(migration_uuid)
        uuid = mig['instance_uuid']
        dest = self.driver(dest_host)
        if dest_host != mig['source_compute'] or dest.disk_info(
                uuid, virt_driver.RESIZE_SUFFIX) is not None:
            dest.remove_instance_dir(uuid)
        repository.instance_update(uuid, {
            'task_state': states.RESIZE_MIGRATING})
        repository.migration_update(
            migration_uuid, {'status': states.MIGRATION_MIGRATING})
