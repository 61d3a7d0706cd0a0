"""Two real local QEMU hosts (one libvirt session daemon each) in a
throwaway state_dir, always stopped afterwards: as bare drivers
(``qemu_hosts``) or registered in a SQLite database with flavors, for the
flows (``qemu_cloud``)."""
import os
import shutil
import tempfile

import pytest

from resize_flows import api
from resize_flows.testing import faults
from resize_flows import virt
from resize_flows.virt.libvirt import local

HOST_NAMES = ('h1', 'h2')


def _missing_tools():
    for path in ('/usr/bin/qemu-system-x86_64', '/usr/bin/qemu-img'):
        if not os.access(path, os.X_OK):
            return path
    return None


def _require_qemu(conf):
    """Skip the test unless QEMU, qemu-img and libvirtd are installed."""
    missing = _missing_tools()
    if not missing and not os.access(conf.libvirt.libvirtd_path, os.X_OK):
        missing = conf.libvirt.libvirtd_path
    if missing:
        pytest.skip('%s is not installed' % missing)


def processes_under(path):
    """Pids of live processes whose command line or environment mentions
    ``path`` (a host's libvirtd has its XDG dirs there, QEMU its disk)."""
    needle = os.fsencode(path)
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open('/proc/%s/stat' % entry, 'rb') as handle:
                if handle.read().rsplit(b')', 1)[-1].split()[0] == b'Z':
                    continue
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                cmdline = handle.read()
            with open('/proc/%s/environ' % entry, 'rb') as handle:
                environ = handle.read()
        except OSError:
            continue
        if needle in cmdline or needle in environ:
            found.append(int(entry))
    return found


@pytest.fixture
def qemu_hosts(conf):
    """{name: driver} of two local QEMU hosts. The state_dir is not under
    pytest's tmp_path: that is private to root, and the daemons run as
    [libvirt]/session_user when the tests run as root."""
    _require_qemu(conf)
    base = tempfile.mkdtemp(prefix='rf-integ-', dir='/tmp')
    os.chmod(base, 0o755)
    conf.set_override('state_dir', os.path.join(base, 'state'))
    conf.set_override('local_hypervisor', 'qemu', group='libvirt')
    try:
        drivers = {}
        for name in HOST_NAMES:
            host = dict(local.create_local_host(name), name=name)
            drivers[name] = virt.get_driver(host)
        # the leftover check below can see what it looks for
        assert processes_under(base)
        yield drivers
    finally:
        try:
            for name in HOST_NAMES:
                local.stop_local_host(name)
        finally:
            virt.reset()
            leftovers = processes_under(base)
            shutil.rmtree(base, ignore_errors=True)
        assert leftovers == [], 'processes left behind: %s' % leftovers


def qemu_pids(path):
    """Pids of QEMU processes whose command line mentions ``path``."""
    pids = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if (os.path.basename(argv[0]).startswith(b'qemu-system')
                and any(os.fsencode(path) in arg for arg in argv)):
            pids.append(int(entry))
    return pids


class QemuCloud:
    """host1 and host2, each a local QEMU host, and two flavors: tiny
    (1 vCPU, 64 MB, 1 GB) and bigger (2 vCPUs, 96 MB, 2 GB)."""

    def __init__(self, base):
        self.base = base
        self.host1 = api.create_host(self.ctx, 'host1', 4, 1024, 20)
        self.host2 = api.create_host(self.ctx, 'host2', 4, 1024, 20)
        self.tiny = api.create_flavor(self.ctx, 'tiny', 1, 64, 1)
        self.bigger = api.create_flavor(self.ctx, 'bigger', 2, 96, 2)

    @property
    def ctx(self):
        return api.get_admin_context()

    def server(self, name='vm1', flavor='tiny', host='host1',
               power_on=True):
        return api.create_server(self.ctx, name, flavor, host,
                                 power_on=power_on)


@pytest.fixture
def qemu_cloud(conf, db_url):
    """A :class:`QemuCloud` on a SQLite database (shutdown_timeout 0, from
    ``conf``: a blank disk has no OS to answer ACPI). Whatever a test leaves
    (guests, daemons) is stopped afterwards, and no process of its hosts
    may remain."""
    _require_qemu(conf)
    base = tempfile.mkdtemp(prefix='rf-integ-', dir='/tmp')
    os.chmod(base, 0o755)
    conf.set_override('state_dir', os.path.join(base, 'state'))
    conf.set_override('local_hypervisor', 'qemu', group='libvirt')
    virt.reset()
    faults.clear()
    try:
        cloud = QemuCloud(base)
        assert processes_under(base)
        yield cloud
    finally:
        faults.clear()
        try:
            # Hosts the test did not delete: their guests and daemons stop.
            hosts = local.hosts_dir()
            names = os.listdir(hosts) if os.path.isdir(hosts) else []
            for name in sorted(names):
                local.stop_local_host(name)
        finally:
            virt.reset()
            leftovers = processes_under(base)
            shutil.rmtree(base, ignore_errors=True)
        assert leftovers == [], 'processes left behind: %s' % leftovers
