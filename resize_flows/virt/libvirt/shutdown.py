"""A guest's clean shutdown, as Nova's libvirt driver does it.

The ACPI power button is pressed, and pressed again every
``retry_interval`` seconds while the guest runs, until ``timeout``
seconds have passed: a guest may miss or ignore a press (still booting,
busy, its handler not started yet). What is left running after that is
for the caller to stop hard. The caller translates libvirt's errors.
"""
import logging
import time

import libvirt

LOG = logging.getLogger(__name__)


def clean_shutdown(dom, timeout, retry_interval, poll_interval,
                   clock=time.monotonic, sleep=time.sleep):
    """Press ``dom``'s power button and wait up to ``timeout`` seconds for
    it to stop, pressing again every ``retry_interval`` seconds. Returns
    True when the guest stopped by itself (or was not running), False
    when it still runs at the timeout or the hypervisor refused a press.
    A domain that is gone raises libvirt's error."""
    start = clock()
    deadline = start + timeout
    next_press = start
    presses = 0
    while dom.isActive():
        now = clock()
        if now >= deadline:
            LOG.warning('%s still running %ss after %d ACPI power button '
                        'presses: stopping it hard', dom.name(), timeout,
                        presses)
            return False
        if now >= next_press:
            try:
                dom.shutdown()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    raise
                if not dom.isActive():      # it stopped meanwhile
                    return True
                LOG.warning('%s refused the ACPI power button (%s): '
                            'stopping it hard', dom.name(), exc)
                return False
            presses += 1
            next_press = now + retry_interval
            LOG.debug('%s: ACPI power button pressed (%d)', dom.name(),
                      presses)
        sleep(max(0.0, min(poll_interval, next_press - now,
                           deadline - now)))
    return True
