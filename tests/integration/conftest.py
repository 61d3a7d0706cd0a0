"""Two real local QEMU hosts (one libvirt session daemon each) in a
throwaway state_dir, always stopped afterwards."""
import os
import shutil
import tempfile

import pytest

from resize_flows import virt
from resize_flows.virt.libvirt import local

HOST_NAMES = ('h1', 'h2')


def _missing_tools():
    for path in ('/usr/bin/qemu-system-x86_64', '/usr/bin/qemu-img'):
        if not os.access(path, os.X_OK):
            return path
    return None


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
    missing = _missing_tools()
    if missing:
        pytest.skip('%s is not installed' % missing)
    if not os.access(conf.libvirt.libvirtd_path, os.X_OK):
        pytest.skip('%s is not installed' % conf.libvirt.libvirtd_path)
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
