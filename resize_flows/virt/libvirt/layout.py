"""The files of an instance directory and of a host's image cache, by name.

An instance lives in ``<instances_path>/<uuid>/`` laid out as Nova's
libvirt driver lays it out:

- ``disk``: the root disk, a qcow2 overlay whose backing file is the
  image's base in the host's cache (``<instances_path>/_base/<sha256>``),
  with an explicit backing format; a blank qcow2 for a server booted
  without an image;
- ``disk.local``: the ephemeral disk (flavor ``ephemeral_gb``), a qcow2
  overlay on a blank ext4 base ``_base/ephemeral_<GB>_ext4``;
- ``disk.swap``: the swap disk (flavor ``swap_mb``), a qcow2 overlay on a
  blank swap base ``_base/swap_<MB>``;
- ``disk.config``: the config drive, an ISO 9660 image labelled
  ``config-2``;
- ``disk.info``: Nova's JSON map of each disk's path to its format;
- ``kernel`` and ``ramdisk``: the image's, for a direct kernel boot;
- ``console.log``: the guest's serial console, appended to;
- ``libvirt.xml``: the domain.

Nothing here touches a file: the names are shared by the driver, the image
cache, the checks of :mod:`resize_flows.testing.state` and the tests.
"""
import hashlib
import re

DISK = 'disk'
EPHEMERAL = 'disk.local'
SWAP = 'disk.swap'
CONFIG_DRIVE = 'disk.config'
DISK_INFO = 'disk.info'
KERNEL = 'kernel'
RAMDISK = 'ramdisk'
CONSOLE_LOG = 'console.log'
DOMAIN_XML = 'libvirt.xml'

#: The guest's virtio disks, in the order it sees them (vda, vdb, vdc).
VIRTIO_DISKS = (DISK, EPHEMERAL, SWAP)
#: Disks a resize snapshot is taken of, and a revert rolls back.
SNAPSHOTTED = (DISK, EPHEMERAL)
#: Every file a move carries, the big ones first.
MOVED = (DISK, EPHEMERAL, SWAP, CONFIG_DRIVE, KERNEL, RAMDISK, DISK_INFO,
         CONSOLE_LOG, DOMAIN_XML)

#: The host's image cache, a directory of the instances path.
BASE_DIR = '_base'
#: The label of a config drive, as cloud-init looks for it.
CONFIG_DRIVE_LABEL = 'config-2'

_SHA256 = re.compile(r'^[0-9a-f]{64}$')
_BASE = re.compile(r'^(?:[0-9a-f]{64}|ephemeral_[1-9][0-9]*_ext4'
                   r'|swap_[1-9][0-9]*)$')


def image_base_name(sha256):
    """The cached base of an image: its content's sha256, so a cached file
    is checked by hashing it."""
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise ValueError('%r is not a sha256' % (sha256,))
    return sha256


def ephemeral_base_name(size_gb):
    """The blank ext4 base of an ephemeral disk of ``size_gb`` GiB."""
    return 'ephemeral_%d_ext4' % _positive(size_gb)


def swap_base_name(size_mb):
    """The blank swap base of a swap disk of ``size_mb`` MiB."""
    return 'swap_%d' % _positive(size_mb)


def is_base_name(name):
    """Whether ``name`` is a name this project gives files in ``_base``."""
    return bool(_BASE.match(name))


def mac_address(instance_uuid):
    """The MAC address of the instance's NIC for its whole life: in the
    ``fa:16:3e`` range Nova uses, the rest from the uuid."""
    tail = hashlib.sha256(instance_uuid.encode()).digest()[:3]
    return 'fa:16:3e:' + ':'.join('%02x' % b for b in tail)


def _positive(value):
    value = int(value)
    if value < 1:
        raise ValueError('a size of %r' % (value,))
    return value
