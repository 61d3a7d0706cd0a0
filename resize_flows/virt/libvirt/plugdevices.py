"""A plugin's devices in a domain: the XML changed, the live domain
changed, for :meth:`.driver.LibvirtDriver.update_devices`.

The XML work is :mod:`.config`'s (:func:`.config.replace_plugin_devices`
keeps the devices that do not change, so a running guest keeps them);
here a failure to read an XML becomes the driver's error, and a running
domain gets the difference between what it has live and what the plugin
wants, whatever the file said before.
"""
import xml.etree.ElementTree as ET

import libvirt

from resize_flows import exception
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import detach


def replace(host, xml, plugin, devices, domain_type, where):
    """:func:`.config.replace_plugin_devices` of ``xml`` (read from
    ``where``), or ``HypervisorError``."""
    try:
        return config.replace_plugin_devices(xml, plugin, devices,
                                             domain_type)
    except (ET.ParseError, AttributeError, ValueError) as exc:
        raise exception.HypervisorError(
            host=host, reason='cannot change the devices of %s: %s'
            % (where, exc))


def _domain_type(host, xml, where):
    """The domain type (``kvm``, ``qemu``, ``test``) ``xml`` says: it
    decides the disks' cache attribute, so a diff against it is exact."""
    try:
        return ET.fromstring(xml).get('type')
    except ET.ParseError as exc:
        raise exception.HypervisorError(
            host=host, reason='cannot change the devices of %s: %s'
            % (where, exc))


def differs(host, xml, plugin, devices, where):
    """Whether the plugin's devices in ``xml`` are not ``devices``."""
    _new, removed, added = replace(host, xml, plugin, devices,
                                   _domain_type(host, xml, where), where)
    return bool(removed or added)


def change_live(host, dom, plugin, devices, where, defined):
    """Detach from the running ``dom`` the plugin's devices it should not
    have (waiting for the guest to let them go: :mod:`.detach`; those
    the definition ``defined`` lacks already, kept by the guest after an
    earlier detach, are asked for once more, not waited for) and attach
    those it lacks, live only (the definition is the caller's). Returns
    the device ids the guest did not let go."""
    live = dom.XMLDesc(0)
    _new, removed, added = replace(host, live, plugin, devices,
                                   _domain_type(host, live, where), where)
    known = {d['id'] for d in config.plugin_devices(defined).get(plugin, [])}
    fresh = [el for el in removed if config.alias_id(el) in known]
    kept = detach.detach_live(dom, fresh, where) + detach.detach_live(
        dom, [el for el in removed if el not in fresh], where,
        patient=False)
    if kept:
        _free_targets(dom, added)
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
    for element in added:
        dom.attachDeviceFlags(config.element_xml(element), flags)
    return [config.alias_id(el) for el in removed
            if el.find('alias').get('name') in kept]


def _free_targets(dom, added):
    """Give each disk of ``added`` whose target a device the guest kept
    still holds live another free target, live only (the definition's
    targets stand: the guest's next start has them)."""
    used = set(config.devices(dom.XMLDesc(0))[0])
    for element in added:
        target = element.find('target')
        if element.tag != 'disk' or target.get('dev') not in used:
            continue
        free = [t for t in config.PLUGIN_DISK_TARGETS if t not in used]
        if free:
            target.set('dev', free[0])
        used.add(target.get('dev'))
