"""Connections to hypervisors, one per URI for the life of the process.

A ``test:///<node.xml>`` connection *is* its hypervisor (the test driver
keeps the domains inside the connection), so it is opened once and kept
until :func:`close_all`. A connection to a daemon is checked before each
use and reopened when the daemon went away; when the URI is the session
socket of a local host of this state_dir, that host's daemon is started
first if it is not running (so local hosts come back after a reboot).

Failures to connect are :class:`resize_flows.exception.HypervisorUnavailable`;
to a URI this process was connected to before, they are
:class:`~resize_flows.exception.HypervisorConnectionLost` (its daemon is
restarting, say): the driver tries again
(:func:`resize_flows.virt.libvirt.errors.reconnecting`). A URI never
reached fails at once. :func:`open_uri` is the one place a connection is
opened, for those kept here and for a caller's own.
"""
import collections
import contextlib
import threading

import libvirt

from resize_flows import exception
from resize_flows.virt.libvirt import daemon

_connections = {}
_reached = set()        # URIs this process has had a connection to
_uri_locks = collections.defaultdict(threading.Lock)
_lock = threading.Lock()
_quiet = False


def is_test_uri(uri):
    return uri.startswith('test:')


def quiet_libvirt():
    """Stop libvirt from printing every error on stderr: its errors are
    raised as exceptions and translated by the callers."""
    global _quiet
    if not _quiet:
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _quiet = True


def get_connection(uri, host=None):
    """The open connection to ``uri`` (``host`` names it in errors)."""
    with _lock:
        uri_lock = _uri_locks[uri]
    with uri_lock:
        conn = _connections.get(uri)
        if conn is not None:
            if is_test_uri(uri) or _alive(conn):
                return conn
            _close(conn)
            _connections.pop(uri, None)
        conn = _open(uri, host or uri, lost=uri in _reached)
        _connections[uri] = conn
        _reached.add(uri)
        return conn


def forget(uri):
    """Close and drop the connection to ``uri``; the next use reopens it.
    For a test URI this throws its hypervisor away."""
    with _lock:
        uri_lock = _uri_locks[uri]
    with uri_lock:
        conn = _connections.pop(uri, None)
    if conn is not None:
        _close(conn)


def close_all():
    """Close every connection (test hypervisors are gone afterwards)."""
    for uri in list(_connections):
        forget(uri)
    _reached.clear()


def _open(uri, host, lost=False):
    hdir = daemon.host_dir_of_uri(uri)
    if hdir is not None:
        daemon.ensure_daemon(hdir)
    return open_uri(uri, host, lost)


def open_uri(uri, host, lost=False):
    """A new connection to ``uri``, of the caller's own (not kept here: it
    closes it). It fails with HypervisorUnavailable (``host`` names the
    hypervisor), or, when ``lost``, HypervisorConnectionLost."""
    quiet_libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        if lost and exc.get_error_code() != libvirt.VIR_ERR_AUTH_FAILED:
            raise exception.HypervisorConnectionLost(host=host,
                                                     reason=str(exc))
        raise exception.HypervisorUnavailable(host=host, reason=str(exc))


def _alive(conn):
    try:
        if not conn.isAlive():
            return False
        conn.getLibVersion()      # one round trip: the daemon answers
    except libvirt.libvirtError:
        return False
    return True


def _close(conn):
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()
