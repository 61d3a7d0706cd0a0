"""Domain XML of an instance, built from code and read back.

The XML is the smallest a QEMU guest needs: vcpus, memory, one virtio qcow2
disk, a serial console on a pty, ACPI so that a guest with an OS can be
shut down cleanly. The same XML defines the domain on libvirt's test driver,
only with ``type='test'`` (its own type, accepted by every libvirt release).
"""
import xml.etree.ElementTree as ET

DOMAIN_NAME_PREFIX = 'instance-'


def domain_name(instance_uuid):
    return DOMAIN_NAME_PREFIX + instance_uuid


def domain_xml(instance_uuid, vcpus, memory_mb, disk_path, domain_type,
               title=None):
    """The domain XML (a string) of an instance."""
    dom = ET.Element('domain', type=domain_type)
    ET.SubElement(dom, 'name').text = domain_name(instance_uuid)
    ET.SubElement(dom, 'uuid').text = instance_uuid
    if title:
        ET.SubElement(dom, 'title').text = title
    ET.SubElement(dom, 'memory', unit='MiB').text = str(int(memory_mb))
    ET.SubElement(dom, 'vcpu').text = str(int(vcpus))
    os_el = ET.SubElement(dom, 'os')
    ET.SubElement(os_el, 'type', arch='x86_64', machine='pc').text = 'hvm'
    ET.SubElement(os_el, 'boot', dev='hd')
    features = ET.SubElement(dom, 'features')
    ET.SubElement(features, 'acpi')
    ET.SubElement(dom, 'on_poweroff').text = 'destroy'
    ET.SubElement(dom, 'on_reboot').text = 'restart'
    ET.SubElement(dom, 'on_crash').text = 'destroy'
    devices = ET.SubElement(dom, 'devices')
    disk = ET.SubElement(devices, 'disk', type='file', device='disk')
    ET.SubElement(disk, 'driver', name='qemu', type='qcow2')
    ET.SubElement(disk, 'source', file=disk_path)
    ET.SubElement(disk, 'target', dev='vda', bus='virtio')
    serial = ET.SubElement(devices, 'serial', type='pty')
    ET.SubElement(serial, 'target', port='0')
    console = ET.SubElement(devices, 'console', type='pty')
    ET.SubElement(console, 'target', type='serial', port='0')
    ET.SubElement(devices, 'memballoon', model='none')
    ET.indent(dom)
    return ET.tostring(dom, encoding='unicode') + '\n'


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
