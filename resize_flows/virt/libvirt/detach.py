"""Detach devices from a running guest, and wait until the guest lets
them go (Nova's ``Guest.detach_device_with_retry`` and its wait for
libvirt's device-removed event).

QEMU removes a hot-unplugged disk or NIC only when the guest's OS
acknowledges the unplug; until then the live domain still has it, and a
request may be lost (a guest still booting). So each device's detach is
sent, the live XML is read every ``[compute]/power_poll_interval`` for
``[compute]/device_detach_timeout`` seconds, and the detach is sent
again, ``[compute]/device_detach_attempts`` times in all. What the guest
never lets go is returned (its user alias): the caller has changed the
persistent definition, so the running guest's copy goes when it stops.
"""
import logging
import time
import xml.etree.ElementTree as ET

import libvirt

from resize_flows.conf import CONF
from resize_flows.virt.libvirt import config

LOG = logging.getLogger(__name__)


def _alias(element):
    found = element.find('alias')
    return found.get('name') if found is not None else None


def live_aliases(dom):
    """The user aliases of the devices the running ``dom`` has now (an
    empty set when it no longer runs: a stopped guest has none)."""
    if not dom.isActive():
        return set()
    devices = ET.fromstring(dom.XMLDesc(0)).find('devices')
    return {a for a in (_alias(el) for el in devices) if a}


def _send(dom, element):
    """Ask for the live detach of ``element``; a device that is gone
    meanwhile, or already being unplugged (libvirt refuses a second
    request then), is left to the wait."""
    try:
        dom.detachDeviceFlags(config.element_xml(element),
                              libvirt.VIR_DOMAIN_AFFECT_LIVE)
    except libvirt.libvirtError as exc:
        if _alias(element) not in live_aliases(dom):
            return
        if 'in the process of unplug' in str(exc):
            return
        raise


def detach_live(dom, elements, where, patient=True):
    """Detach ``elements`` (device elements with a user alias) from the
    running ``dom`` and wait for the guest to release them, re-sending
    each request (see the module); not ``patient``: one request, no wait
    (a device the guest kept after an earlier detach: asked again, not
    waited for again). Returns the aliases the guest still has at the
    end (none when it acknowledged every unplug, or stopped)."""
    pending = {_alias(el): el for el in elements}
    attempts = CONF.compute.device_detach_attempts if patient else 1
    timeout = CONF.compute.device_detach_timeout if patient else 0
    for attempt in range(1, attempts + 1):
        for alias in sorted(pending):
            _send(dom, pending[alias])
        deadline = time.monotonic() + timeout
        while True:
            live = live_aliases(dom)
            pending = {a: el for a, el in pending.items() if a in live}
            if not pending or time.monotonic() >= deadline:
                break
            time.sleep(CONF.compute.power_poll_interval)
        if not pending or not patient:
            return sorted(pending)
        LOG.info('%s: the guest has not released %s after detach request '
                 '%d of %d', where, ', '.join(sorted(pending)), attempt,
                 attempts)
    LOG.warning('%s: the running guest did not release %s after %d detach '
                'requests: its definition no longer has it, the running '
                'guest keeps it until it stops', where,
                ', '.join(sorted(pending)), attempts)
    return sorted(pending)
