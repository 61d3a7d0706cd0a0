"""The plugins' devices in a domain's XML (virt/libvirt/config.py) and
driver.update_devices on libvirt's test driver, with real instance
directories."""
import xml.etree.ElementTree as ET

import libvirt
import pytest

from resize_flows import exception
from resize_flows.virt import driver as virt_driver
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import host as libvirt_host
from resize_flows.virt.libvirt import layout

SMALL = {'name': 'm1.small', 'vcpus': 1, 'memory_mb': 512, 'root_gb': 1}
LARGE = {'name': 'm1.large', 'vcpus': 2, 'memory_mb': 1024, 'root_gb': 1}
UUID = '0a6c8e6e-5e0b-4f3e-9c55-7e1f2b3c4d5e'
NIC = {'type': 'interface', 'id': 'port-1', 'mac': 'fa:16:3e:00:00:01'}
NIC2 = {'type': 'interface', 'id': 'port-2', 'mac': 'fa:16:3e:00:00:02'}
VOL = {'type': 'disk', 'id': 'vol-1', 'path': '/srv/volumes/vol-1',
       'format': 'raw', 'serial': 'vol-1'}
VOL2 = {'type': 'disk', 'id': 'vol-2', 'path': '/srv/volumes/vol-2',
        'format': 'qcow2', 'serial': 'vol-2'}


def _xml(plugin_devices=None):
    return config.domain_xml(UUID, 1, 512, '/srv/instances/' + UUID,
                             'kvm', present=layout.VIRTIO_DISKS,
                             plugin_devices=plugin_devices)


def _targets(xml):
    return [t.get('dev') for t in
            ET.fromstring(xml).findall('./devices/disk/target')]


def _device_tags(xml):
    return [el.tag for el in ET.fromstring(xml).find('devices')]


# -- config ------------------------------------------------------------------

def test_domain_xml_has_the_plugins_devices_after_the_instances_own():
    xml = _xml({'ports': [NIC, NIC2], 'volumes': [VOL, VOL2]})
    assert config.plugin_devices(xml) == {'ports': [NIC, NIC2],
                                          'volumes': [VOL, VOL2]}
    # The instance's disks keep vda..., the plugins' take vdd, vde.
    assert _targets(xml)[-2:] == ['vdd', 'vde']
    assert 'vdd' not in _targets(_xml())
    # The instance's own NIC first, its MAC from the uuid.
    assert config.devices(xml)[1] == layout.mac_address(UUID)
    dom = ET.fromstring(xml)
    disk = dom.find("./devices/disk/alias[@name='ua-volumes-vol-1']/..")
    assert disk.findtext('serial') == 'vol-1'
    assert disk.find('driver').get('type') == 'raw'
    assert disk.find('source').get('file') == VOL['path']
    # Before the serial console, which stays where it was.
    tags = _device_tags(xml)
    assert tags.index('serial') == _device_tags(_xml()).index('serial') + 4
    assert max(i for i, t in enumerate(tags) if t == 'interface') < \
        tags.index('serial')
    assert config.plugin_devices(_xml()) == {}


def test_add_plugin_device_takes_the_first_free_target_before_the_serial():
    devices = ET.fromstring(_xml({'volumes': [VOL]})).find('devices')
    el = config.add_plugin_device(devices, 'other', VOL2, {'cache': 'none'})
    assert el.find('target').get('dev') == 'vde'
    assert el.find('driver').get('cache') == 'none'
    assert el.find('alias').get('name') == 'ua-other-vol-2'
    assert config.alias_id(el) == 'vol-2'
    assert [c.tag for c in devices][:7] == [
        'disk', 'disk', 'disk', 'interface', 'disk', 'disk', 'serial']
    nic = config.add_plugin_device(devices, 'other', NIC)
    assert nic.get('type') == 'user'
    assert nic.find('mac').get('address') == NIC['mac']
    assert nic.find('model').get('type') == 'virtio'


def test_add_plugin_device_refuses_when_no_target_is_left():
    devices = ET.fromstring(_xml()).find('devices')
    for n, target in enumerate(config.PLUGIN_DISK_TARGETS):
        config.add_plugin_device(devices, 'volumes',
                                 dict(VOL, id='v%d' % n))
    with pytest.raises(ValueError, match='no free disk target'):
        config.add_plugin_device(devices, 'volumes', dict(VOL, id='last'))


def test_replace_plugin_devices_keeps_the_other_plugins_and_the_own():
    xml = _xml({'ports': [NIC], 'volumes': [VOL]})
    new, removed, added = config.replace_plugin_devices(
        xml, 'ports', [NIC2], 'kvm')
    assert config.plugin_devices(new) == {'volumes': [VOL],
                                          'ports': [NIC2]}
    assert [config.alias_id(e) for e in removed] == ['port-1']
    assert [config.alias_id(e) for e in added] == ['port-2']
    assert config.summary(new) == config.summary(xml)
    assert config.devices(new) == config.devices(xml)
    # No devices: the plugin's are gone, nothing else.
    none, removed, added = config.replace_plugin_devices(
        new, 'volumes', [], 'kvm')
    assert config.plugin_devices(none) == {'ports': [NIC2]}
    assert ([config.alias_id(e) for e in removed], added) == (['vol-1'], [])
    # Unchanged devices stay (a running guest keeps them attached).
    same, removed, added = config.replace_plugin_devices(
        new, 'ports', [NIC, NIC2], 'kvm')
    assert ([config.alias_id(e) for e in added], removed) == (['port-1'], [])
    assert config.plugin_devices(same)['ports'] == [NIC2, NIC]
    vols, removed, added = config.replace_plugin_devices(
        new, 'volumes', [VOL, VOL2], 'kvm')
    assert (removed, [e.find('target').get('dev') for e in added]) == (
        [], ['vde'])
    # A changed device is replaced.
    moved = dict(VOL, path='/elsewhere/vol-1')
    _new, removed, added = config.replace_plugin_devices(
        vols, 'volumes', [moved, VOL2], 'kvm')
    assert [config.alias_id(e) for e in removed] == ['vol-1']
    assert [(config.alias_id(e), e.find('target').get('dev'))
            for e in added] == [('vol-1', 'vdd')]
    # A plugin whose name starts like another's keeps its own.
    both = _xml({'port': [NIC], 'ports': [NIC2]})
    only, _removed, _added = config.replace_plugin_devices(
        both, 'port', [], 'kvm')
    assert config.plugin_devices(only) == {'ports': [NIC2]}


def test_a_disk_on_the_test_driver_gets_no_cache_attribute():
    xml, _r, [added] = config.replace_plugin_devices(_xml(), 'volumes',
                                                     [VOL], 'test')
    assert added.find('driver').get('cache') is None
    xml, _r, [added] = config.replace_plugin_devices(_xml(), 'volumes',
                                                     [VOL], 'kvm')
    assert added.find('driver').get('cache') == 'none'


# -- driver.update_devices on the test driver --------------------------------

def _defined_xml(drv, uuid):
    dom = libvirt_host.get_connection(drv.uri).lookupByUUIDString(uuid)
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def _file_xml(drv, uuid, suffix=''):
    with open(drv.instance_dir(uuid, suffix) + '/libvirt.xml') as handle:
        return handle.read()


def test_update_devices_rewrites_the_file_and_redefines_the_domain(
        src, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL, plugin_devices={'volumes': [VOL]})
    assert config.plugin_devices(_defined_xml(src, uuid)) == {
        'volumes': [VOL]}
    assert src.update_devices(uuid, 'ports', [NIC, NIC2]) == (
        ['port-1', 'port-2'], [], [])
    wanted = {'volumes': [VOL], 'ports': [NIC, NIC2]}
    assert config.plugin_devices(_file_xml(src, uuid)) == wanted
    assert config.plugin_devices(_defined_xml(src, uuid)) == wanted
    # Already so: nothing done.
    assert src.update_devices(uuid, 'ports', [NIC, NIC2]) == ([], [], [])
    assert src.update_devices(uuid, 'ports', [NIC2]) == ([], ['port-1'], [])
    assert src.update_devices(uuid, 'ports', [NIC2, NIC]) == (
        ['port-1'], [], [])
    assert src.update_devices(uuid, 'ports', [NIC2]) == ([], ['port-1'], [])
    assert config.plugin_devices(_defined_xml(src, uuid)) == {
        'volumes': [VOL], 'ports': [NIC2]}
    # The instance's own devices and flavor are untouched.
    assert src.get_info(uuid) == virt_driver.InstanceInfo(
        power_state=1, vcpus=1, memory_mb=512)
    assert config.devices(_defined_xml(src, uuid))[1] == \
        layout.mac_address(uuid)


def test_update_devices_again_brings_a_domain_left_behind_to_the_file(
        src, instance):
    """A process killed after the file was written and before the domain
    was defined again: the next call finds the file right and still
    defines the domain."""
    uuid = instance['uuid']
    src.spawn(instance, SMALL)
    before = _defined_xml(src, uuid)
    src.update_devices(uuid, 'volumes', [VOL])
    # Back to the old definition, the file keeping the volume.
    libvirt_host.get_connection(src.uri).defineXML(before)
    assert config.plugin_devices(_defined_xml(src, uuid)) == {}
    assert config.plugin_devices(_file_xml(src, uuid)) == {'volumes': [VOL]}
    assert src.update_devices(uuid, 'volumes', [VOL]) == ([], [], [])
    assert config.plugin_devices(_defined_xml(src, uuid)) == {
        'volumes': [VOL]}


def test_update_devices_redefines_a_stashed_source(src, dst, instance):
    uuid = instance['uuid']
    src.spawn(instance, SMALL, plugin_devices={'ports': [NIC]})
    src.migrate_disk_and_power_off(uuid, dst, 'resize-snap')
    assert src.list_instance_dirs() == [uuid + virt_driver.RESIZE_SUFFIX]
    src.update_devices(uuid, 'ports', [NIC2],
                       suffix=virt_driver.RESIZE_SUFFIX)
    assert config.plugin_devices(_file_xml(
        src, uuid, virt_driver.RESIZE_SUFFIX)) == {'ports': [NIC2]}
    # The source's domain, defined from that file, is defined again.
    assert config.plugin_devices(_defined_xml(src, uuid)) == {
        'ports': [NIC2]}
    # The destination's guest, from its own file, keeps what it was given.
    dst.finish_migration(instance, LARGE, 'resize-snap', True,
                         plugin_devices={'ports': [NIC]})
    assert config.plugin_devices(_defined_xml(dst, uuid)) == {
        'ports': [NIC]}


def test_update_devices_leaves_another_domain_of_the_same_uuid(
        src, instance):
    """A resize on one host: <uuid>_resize's file changes, the domain
    defined (the destination's, another flavor) is not redefined."""
    uuid = instance['uuid']
    src.spawn(instance, SMALL, plugin_devices={'ports': [NIC]})
    src.migrate_disk_and_power_off(uuid, src, 'resize-snap')
    src.finish_migration(instance, LARGE, 'resize-snap', True,
                         plugin_devices={'ports': [NIC]})
    src.update_devices(uuid, 'ports', [], suffix=virt_driver.RESIZE_SUFFIX)
    assert config.plugin_devices(_file_xml(
        src, uuid, virt_driver.RESIZE_SUFFIX)) == {}
    defined = _defined_xml(src, uuid)
    assert config.plugin_devices(defined) == {'ports': [NIC]}
    assert config.summary(defined)[1] == LARGE['vcpus']


def test_update_devices_of_a_missing_file_is_a_hypervisor_error(
        src, instance):
    with pytest.raises(exception.HypervisorError, match='libvirt.xml'):
        src.update_devices(instance['uuid'], 'ports', [NIC])
