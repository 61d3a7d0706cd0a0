"""Domain XML of an instance, built from code and read back.

The domain holds what its instance directory holds (:mod:`.layout`): every
virtio disk present (``disk``, ``disk.local``, ``disk.swap`` as vda, vdb,
vdc), the config drive as a read-only IDE CD-ROM (hda), a direct kernel
boot when the directory has ``kernel`` (and ``ramdisk``), a virtio NIC
with the instance's MAC (user-mode networking), the serial console
appended to ``console.log``, a virtio RNG, ACPI so that a guest with an
OS can be shut down cleanly, and no balloon. The same XML defines the
domain on libvirt's test driver, only with ``type='test'`` (its own type,
accepted by every libvirt release) and no ``cache`` mode.
"""
import posixpath
import xml.etree.ElementTree as ET

from resize_flows.virt.libvirt import layout

DOMAIN_NAME_PREFIX = 'instance-'
#: The kernel command line of a direct kernel boot.
KERNEL_CMDLINE = 'console=ttyS0 quiet panic=-1'


def domain_name(instance_uuid):
    return DOMAIN_NAME_PREFIX + instance_uuid


def domain_xml(instance_uuid, vcpus, memory_mb, instance_dir, domain_type,
               title=None, present=(layout.DISK,), mac=None):
    """The domain XML (a string) of an instance whose directory is
    ``instance_dir`` and holds the files named in ``present``. ``mac``
    defaults to :func:`.layout.mac_address` of the uuid."""
    def path(name):
        return posixpath.join(instance_dir, name)

    present = set(present)
    dom = ET.Element('domain', type=domain_type)
    ET.SubElement(dom, 'name').text = domain_name(instance_uuid)
    ET.SubElement(dom, 'uuid').text = instance_uuid
    if title:
        ET.SubElement(dom, 'title').text = title
    ET.SubElement(dom, 'memory', unit='MiB').text = str(int(memory_mb))
    ET.SubElement(dom, 'vcpu').text = str(int(vcpus))
    os_el = ET.SubElement(dom, 'os')
    ET.SubElement(os_el, 'type', arch='x86_64', machine='pc').text = 'hvm'
    if layout.KERNEL in present:
        ET.SubElement(os_el, 'kernel').text = path(layout.KERNEL)
        if layout.RAMDISK in present:
            ET.SubElement(os_el, 'initrd').text = path(layout.RAMDISK)
        ET.SubElement(os_el, 'cmdline').text = KERNEL_CMDLINE
    else:
        ET.SubElement(os_el, 'boot', dev='hd')
    features = ET.SubElement(dom, 'features')
    ET.SubElement(features, 'acpi')
    ET.SubElement(features, 'apic')
    ET.SubElement(dom, 'on_poweroff').text = 'destroy'
    ET.SubElement(dom, 'on_reboot').text = 'restart'
    ET.SubElement(dom, 'on_crash').text = 'destroy'
    devices = ET.SubElement(dom, 'devices')
    cache = {} if domain_type == 'test' else {'cache': 'none'}
    for name, dev in zip(layout.VIRTIO_DISKS, ('vda', 'vdb', 'vdc')):
        if name not in present:
            continue
        disk = ET.SubElement(devices, 'disk', type='file', device='disk')
        ET.SubElement(disk, 'driver', name='qemu', type='qcow2', **cache)
        ET.SubElement(disk, 'source', file=path(name))
        ET.SubElement(disk, 'target', dev=dev, bus='virtio')
    if layout.CONFIG_DRIVE in present:
        cdrom = ET.SubElement(devices, 'disk', type='file', device='cdrom')
        ET.SubElement(cdrom, 'driver', name='qemu', type='raw')
        ET.SubElement(cdrom, 'source', file=path(layout.CONFIG_DRIVE))
        ET.SubElement(cdrom, 'target', dev='hda', bus='ide')
        ET.SubElement(cdrom, 'readonly')
    nic = ET.SubElement(devices, 'interface', type='user')
    ET.SubElement(nic, 'mac',
                  address=mac or layout.mac_address(instance_uuid))
    ET.SubElement(nic, 'model', type='virtio')
    serial = ET.SubElement(devices, 'serial', type='file')
    ET.SubElement(serial, 'source', path=path(layout.CONSOLE_LOG),
                  append='on')
    ET.SubElement(serial, 'target', port='0')
    console = ET.SubElement(devices, 'console', type='file')
    ET.SubElement(console, 'source', path=path(layout.CONSOLE_LOG),
                  append='on')
    ET.SubElement(console, 'target', type='serial', port='0')
    rng = ET.SubElement(devices, 'rng', model='virtio')
    ET.SubElement(rng, 'backend', model='random').text = '/dev/urandom'
    ET.SubElement(devices, 'memballoon', model='none')
    ET.indent(dom)
    return ET.tostring(dom, encoding='unicode') + '\n'


def devices(xml):
    """{target dev: source file} of the domain's disks and CD-ROMs, and
    the MAC of its first NIC, read from a domain XML."""
    dom = ET.fromstring(xml)
    disks = {}
    for disk in dom.findall('./devices/disk'):
        target, source = disk.find('target'), disk.find('source')
        if target is not None and source is not None:
            disks[target.get('dev')] = source.get('file')
    mac = dom.find('./devices/interface/mac')
    return disks, mac.get('address') if mac is not None else None


_UNIT_KIB = {'b': 1 / 1024, 'bytes': 1 / 1024, 'k': 1, 'kib': 1,
             'kb': 1000 / 1024, 'm': 1024, 'mib': 1024, 'mb': 1000 ** 2 / 1024,
             'g': 1024 ** 2, 'gib': 1024 ** 2, 'gb': 1000 ** 3 / 1024}


def summary(xml):
    """(uuid, vcpus, memory_mb, disk path) read from a domain XML."""
    dom = ET.fromstring(xml)
    mem = dom.find('memory')
    unit = (mem.get('unit') or 'KiB').lower()
    memory_mb = int(int(mem.text) * _UNIT_KIB[unit]) // 1024
    source = dom.find("./devices/disk[@device='disk']/source")
    return (dom.findtext('uuid'), int(dom.findtext('vcpu')), memory_mb,
            source.get('file') if source is not None else None)
