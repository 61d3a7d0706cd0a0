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
               title=None, present=(layout.DISK,), mac=None,
               plugin_devices=None):
    """The domain XML (a string) of an instance whose directory is
    ``instance_dir`` and holds the files named in ``present``. ``mac``
    defaults to :func:`.layout.mac_address` of the uuid.
    ``plugin_devices``: ``{plugin: [device dict]}`` (see
    :mod:`resize_flows.plugins`), added after the instance's own."""
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
    for plugin, devs in (plugin_devices or {}).items():
        for dev in devs:
            add_plugin_device(devices, plugin, dev, cache)
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


#: Targets of the plugins' disks, after the instance's own vda-vdc.
PLUGIN_DISK_TARGETS = tuple('vd' + c for c in 'defghijklmnopqrstuvwxyz')
_ALIAS_PREFIX = 'ua-'


def plugin_alias(plugin, device_id):
    """The libvirt user alias of a plugin's device: ``ua-<plugin>-<id>``
    (a plugin's name has no "-")."""
    return '%s%s-%s' % (_ALIAS_PREFIX, plugin, device_id)


def _alias_owner(element):
    alias = element.find('alias')
    name = alias.get('name', '') if alias is not None else ''
    if not name.startswith(_ALIAS_PREFIX) or '-' not in name[3:]:
        return None, None
    return tuple(name[len(_ALIAS_PREFIX):].split('-', 1))


def alias_id(element):
    """The device id in a plugin device element's alias."""
    return _alias_owner(element)[1]


def add_plugin_device(devices_el, plugin, dev, cache=None):
    """Append ``dev`` of ``plugin`` to a domain's ``<devices>`` element
    (a disk takes the first free target of PLUGIN_DISK_TARGETS); the
    element. ``cache``: the disk driver's extra attributes."""
    if dev['type'] == 'interface':
        el = ET.Element('interface', type='user')
        ET.SubElement(el, 'mac', address=dev['mac'])
        ET.SubElement(el, 'model', type='virtio')
    else:
        used = {t.get('dev') for t in devices_el.findall('./disk/target')}
        free = [t for t in PLUGIN_DISK_TARGETS if t not in used]
        if not free:
            raise ValueError('no free disk target for %s of %s'
                             % (dev['id'], plugin))
        el = ET.Element('disk', type='file', device='disk')
        ET.SubElement(el, 'driver', name='qemu', type=dev['format'],
                      **(cache or {}))
        ET.SubElement(el, 'source', file=dev['path'])
        ET.SubElement(el, 'target', dev=free[0], bus='virtio')
        if dev.get('serial'):
            ET.SubElement(el, 'serial').text = str(dev['serial'])
    ET.SubElement(el, 'alias', name=plugin_alias(plugin, dev['id']))
    # Before the serial console, if any, so that the order stays stable.
    before = devices_el.find('serial')
    if before is not None:
        devices_el.insert(list(devices_el).index(before), el)
    else:
        devices_el.append(el)
    return el


def _element_device(el, dev_id):
    """The device dict of a plugin device element, or None."""
    if el.tag == 'interface':
        return {'type': 'interface', 'id': dev_id,
                'mac': el.find('mac').get('address')}
    if el.tag == 'disk':
        return {'type': 'disk', 'id': dev_id,
                'path': el.find('source').get('file'),
                'format': el.find('driver').get('type'),
                'serial': el.findtext('serial')}
    return None


def plugin_devices(xml):
    """``{plugin: [device dict]}`` of a domain XML's plugin devices (by
    their aliases), in the XML's order."""
    dom = ET.fromstring(xml)
    found = {}
    for el in dom.find('devices'):
        plugin, dev_id = _alias_owner(el)
        dev = None if plugin is None else _element_device(el, dev_id)
        if dev is not None:
            found.setdefault(plugin, []).append(dev)
    return found


def _same(dev, wanted):
    """Whether device dict ``dev`` (read from XML) is ``wanted``."""
    return dev == dict(wanted, serial=wanted.get('serial') or None) \
        if wanted.get('type') == 'disk' else dev == wanted


def replace_plugin_devices(xml, plugin, devs, domain_type):
    """``(new xml, removed elements, added elements)``: ``xml`` with the
    devices of ``plugin`` replaced by ``devs`` (those of other plugins
    and the instance's own are kept as they are; so are the plugin's
    devices that ``devs`` has unchanged, so that a running guest keeps
    them attached)."""
    dom = ET.fromstring(xml)
    devices_el = dom.find('devices')
    removed, kept = [], []
    for el in list(devices_el):
        owner, dev_id = _alias_owner(el)
        if owner != plugin:
            continue
        dev = _element_device(el, dev_id)
        if dev is not None and dev not in kept and \
                any(_same(dev, wanted) for wanted in devs):
            kept.append(dev)
            continue
        devices_el.remove(el)
        removed.append(el)
    cache = {} if domain_type == 'test' else {'cache': 'none'}
    added = [add_plugin_device(devices_el, plugin, dev, cache)
             for dev in devs if not any(_same(k, dev) for k in kept)]
    ET.indent(dom)
    return (ET.tostring(dom, encoding='unicode') + '\n', removed, added)


def element_xml(element):
    """One device element as the XML libvirt's attach/detach take."""
    return ET.tostring(element, encoding='unicode')


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
