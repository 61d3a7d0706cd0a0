"""Hypervisor drivers: the interface (:mod:`.driver`) and where to get one.

:func:`get_driver` hands out one driver per host (name and URI) for the
life of the process, so the connections behind them are opened once; test
hosts (``test:///``) depend on that, their hypervisor lives in the
connection. :func:`reset` closes everything (tests call it between cases).

The functions under "local hosts" are what the API needs to register and
remove a host without knowing the implementation behind it: a local
simulated host (a directory of this machine's state_dir with its own
hypervisor) and the ssh address of a host's files.
"""
import os
import threading

_drivers = {}
_lock = threading.Lock()


_MISSING = object()


def _field(host, key, default=_MISSING):
    if isinstance(host, dict):
        return host[key] if default is _MISSING else host.get(key, default)
    if default is _MISSING:
        return getattr(host, key)
    return getattr(host, key, default)


def get_driver(host):
    """The driver of ``host``: a dict or object with ``name``, ``uri``,
    ``instances_path`` and optionally ``ssh`` (the address of the machine
    its files are on). Cached per (name, uri); a changed instances path or
    ssh address gives a new driver on the same connection."""
    # Imported here so that the interface can be used without libvirt.
    from resize_flows.virt.libvirt import driver as libvirt_driver
    name = _field(host, 'name')
    uri = _field(host, 'uri')
    instances_path = _field(host, 'instances_path')
    ssh = _field(host, 'ssh', None) or None
    with _lock:
        drv = _drivers.get((name, uri))
        path = (os.path.normpath if ssh else os.path.abspath)(
            instances_path)
        if (drv is None or drv.instances_path != path
                or drv.ssh != ssh):
            drv = libvirt_driver.LibvirtDriver(name, uri, instances_path,
                                               ssh)
            _drivers[(name, uri)] = drv
        return drv


def reset():
    """Forget every driver and close every hypervisor connection; the
    state of test hypervisors is gone afterwards."""
    from resize_flows.virt.libvirt import host as libvirt_host
    with _lock:
        _drivers.clear()
    libvirt_host.close_all()


# -- local hosts -------------------------------------------------------------
# Imported in each function, as above, so that the interface can be used
# without libvirt.

def clean_image_cache(host):
    """Remove the unused bases of ``host``'s image cache (a host record:
    ``name``, ``instances_path``, ``ssh``); ``[(base, bytes freed)]``."""
    from resize_flows.virt.libvirt import files
    from resize_flows.virt.libvirt import imagecache
    return imagecache.clean(files.for_host(
        _field(host, 'name'), _field(host, 'instances_path'),
        _field(host, 'ssh', None) or None))


def check_ssh_address(address):
    """Raise InvalidInput unless ``address`` is an ssh address
    (``[user@]host[:port]``)."""
    from resize_flows.virt.libvirt import remote
    remote.parse_address(address)


def local_host_exists(name):
    """Whether the directory of a local host ``name`` exists."""
    from resize_flows.virt.libvirt import daemon
    return os.path.exists(daemon.host_dir(name))


def create_local_host(name):
    """Set up a local simulated host ``name`` (``[libvirt]/
    local_hypervisor`` says which kind); returns ``{'uri',
    'instances_path'}`` to register it with."""
    from resize_flows.virt.libvirt import local
    return local.create_local_host(name)


def is_local_host(name, instances_path):
    """Whether the host ``name`` with ``instances_path`` is a local host
    of this state_dir (its instances under the host's own directory)."""
    from resize_flows.virt.libvirt import daemon
    hdir = os.path.join(daemon.hosts_dir(), name)
    return os.path.dirname(os.path.abspath(instances_path)) == hdir


def remove_local_host(name):
    """Stop a local host's hypervisor and remove its directory."""
    from resize_flows.virt.libvirt import local
    local.remove_local_host(name)
