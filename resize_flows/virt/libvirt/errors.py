"""libvirt's failures in resize-flows' terms, and when a call runs again.

:func:`translate` turns a ``libvirtError`` into one of ours: a missing
domain is ``InstanceNotFoundOnHost``, a lost daemon
``HypervisorConnectionLost`` (a ``HypervisorUnavailable``), the rest
``HypervisorError`` or the error of the step. :func:`reconnecting` runs a
driver call again on a new connection when its connection was lost, a
bounded number of times.
"""
import contextlib
import functools
import logging
import threading
import time

import libvirt

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.virt.libvirt import host as libvirt_host

LOG = logging.getLogger(__name__)

# Errors that mean the connection, not the request, failed.
CONNECTION_ERRORS = frozenset((
    libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_AUTH_FAILED,
))
# Of those, the ones a new connection does not mend.
NOT_RETRIED = frozenset((libvirt.VIR_ERR_AUTH_FAILED,))
CONNECTION_DOMAINS = frozenset((libvirt.VIR_FROM_RPC,
                                libvirt.VIR_FROM_REMOTE))
# "domain is not running" and the like: the wanted state is there already.
ALREADY = frozenset((libvirt.VIR_ERR_OPERATION_INVALID,
                     libvirt.VIR_ERR_NO_DOMAIN))

_CALLS = threading.local()


def reconnecting(method):
    """Run a driver call again on a new connection when its connection to
    libvirt was lost (:class:`~resize_flows.exception.
    HypervisorConnectionLost`: the daemon was restarted, or is), up to
    ``[libvirt]/reconnect_attempts`` times, waiting
    ``[libvirt]/reconnect_interval`` seconds more before each. The calls
    are idempotent: one cut off half-way is finished by the next. Only
    the outermost call of a thread retries (a call that makes others is
    run again whole)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if getattr(_CALLS, 'depth', 0):
            return method(self, *args, **kwargs)
        _CALLS.depth = 1
        try:
            attempt = 0
            while True:
                try:
                    return method(self, *args, **kwargs)
                except exception.HypervisorConnectionLost as exc:
                    # A test hypervisor lives in its connection: a new
                    # one would be another, empty, hypervisor.
                    if (attempt >= CONF.libvirt.reconnect_attempts
                            or libvirt_host.is_test_uri(self.uri)):
                        raise
                    attempt += 1
                    LOG.warning('%s on host %s: %s; reconnecting (%d of '
                                '%d)', method.__name__, self.host,
                                exc.reason, attempt,
                                CONF.libvirt.reconnect_attempts)
                    libvirt_host.forget(self.uri)
                    time.sleep(CONF.libvirt.reconnect_interval * attempt)
        finally:
            _CALLS.depth = 0
    return wrapper


@contextlib.contextmanager
def translate(drv, instance_uuid=None, error=None):
    """Turn a libvirtError raised inside a call of the driver ``drv`` into
    one of ours: ``error`` (a callable taking ``reason``) for failures of
    the step itself."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        reason = str(exc)
        if code == libvirt.VIR_ERR_NO_DOMAIN and instance_uuid:
            raise exception.InstanceNotFoundOnHost(
                instance_uuid=instance_uuid, host=drv.host) from None
        if (code in CONNECTION_ERRORS
                or exc.get_error_domain() in CONNECTION_DOMAINS):
            libvirt_host.forget(drv.uri)
            lost = (exception.HypervisorUnavailable
                    if code in NOT_RETRIED
                    else exception.HypervisorConnectionLost)
            raise lost(host=drv.host, reason=reason) from None
        if error is not None:
            raise error(reason) from None
        raise exception.HypervisorError(host=drv.host,
                                        reason=reason) from None
