"""Two real local QEMU hosts (one libvirt session daemon each) in a
throwaway state_dir, always stopped afterwards: as bare drivers
(``qemu_hosts``) or registered in a SQLite database with flavors, for the
flows (``qemu_cloud``)."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from resize_flows import api
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import guest
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import local
from tests import conftest as tests_conftest
from tests import db_fixtures
from tests.integration import crash_servers
from tests import needs

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
                local.remove_local_host(name)
        finally:
            virt.reset()
            leftovers = processes_under(base)
            shutil.rmtree(base, ignore_errors=True)
        assert leftovers == [], 'processes left behind: %s' % leftovers


def domains_of(vm):
    """{host name: InstanceInfo} of every host with a domain of ``vm``."""
    out = {}
    for host in repository.host_list():
        drv = virt.get_driver(host)
        if drv.instance_exists(vm):
            out[host['name']] = drv.get_info(vm)
    return out


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


#: Whether this run is the whole crash matrix (``-m crash_matrix``, as
#: ``make crash-matrix`` and CI run it, or RESIZE_FLOWS_CRASH_MATRIX=full)
#: rather than ``make test``'s sample.
full_crash_run = tests_conftest.full_run


def wait_leases_expired(vm, operation=None):
    """Wait until no flow of ``vm`` (of ``operation`` when given) is
    ``running``, as the flow log shows it: the lease of a process that
    died expires within CRASH_LEASE_SECONDS. Returns the flows, newest
    first (``flowstatus.list_flows``)."""
    deadline = time.monotonic() + CRASH_LEASE_SECONDS + 15
    while True:
        flows = flowstatus.list_flows(server=vm, operation=operation)
        if not any(f['status'] == flowstatus.RUNNING for f in flows):
            return flows
        assert time.monotonic() < deadline, 'lease never expired: %s' % (
            [f for f in flows if f['status'] == flowstatus.RUNNING],)
        time.sleep(0.2)


def assert_consistent(vm):
    """The instance's domains agree with its records, and nothing leaks:
    one domain, on the host the records name, in the power state they
    name, with the flavor's size; during a move that waits for confirm or
    revert the source may keep its guest too, shut off."""
    inst = repository.instance_get(vm)
    migs = repository.migration_list(vm)
    mig = migs[-1] if migs else None
    assert inst['task_state'] is None, inst
    domains = domains_of(vm)
    assert inst['host'] in domains, (inst['host'], domains)
    info = domains.pop(inst['host'])
    flavor = repository.flavor_get(inst['flavor_id'])
    assert (info.power_state, info.vcpus, info.memory_mb) == (
        inst['power_state'], flavor['vcpus'], flavor['memory_mb'])
    if mig is not None and mig['status'] == states.MIGRATION_FINISHED:
        assert inst['vm_state'] == states.RESIZED
        assert inst['host'] == mig['dest_compute']
        assert (states.vm_state_for_power(inst['power_state'])
                == mig['old_vm_state'])
        others = {name: i.power_state for name, i in domains.items()}
        assert set(others) <= {mig['source_compute']}, others
        assert set(others.values()) <= {states.SHUTDOWN}, others
    else:
        assert mig is None or mig['status'] in states.MIGRATION_TERMINAL, \
            mig
        assert inst['vm_state'] == states.vm_state_for_power(
            inst['power_state'])
        assert domains == {}, 'more than one domain: %s' % domains
    assert state.leaks() == []


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
            hosts = daemon.hosts_dir()
            names = os.listdir(hosts) if os.path.isdir(hosts) else []
            for name in sorted(names):
                local.remove_local_host(name)
        finally:
            virt.reset()
            leftovers = processes_under(base)
            shutil.rmtree(base, ignore_errors=True)
        assert leftovers == [], 'processes left behind: %s' % leftovers


# -- shared hosts for the crash matrix ---------------------------------------

#: ``[flows] lease_seconds`` of the crash matrix's processes: the least the
#: option allows, so that the flow of a process that died counts as
#: interrupted (its lease expired) at most two seconds later.
CRASH_LEASE_SECONDS = 2

_CRASH_CONFIG = """\
[DEFAULT]
state_dir = {state_dir}

[database]
connection = {connection}

[libvirt]
local_hypervisor = qemu

[compute]
# A blank disk has no OS to answer ACPI.
shutdown_timeout = 0

[flows]
lease_seconds = {lease_seconds}
"""

_STOP_HOSTS = """\
import sys
from resize_flows import conf
from resize_flows.virt.libvirt import local
conf.register_opts(conf.CONF)
conf.CONF(['--config-file', sys.argv[1]], project='resize-flows')
for name in sys.argv[2:]:
    local.remove_local_host(name)
"""


#: The image the shared hosts' servers boot from (no OS: data only).
IMAGE = 'cm-image'


def make_image(path):
    """A 32 MiB qcow2 image holding two extents of patterns: the root
    disk of every server of the shared hosts is an overlay on it."""
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path,
                    '32M'], check=True)
    subprocess.run(['qemu-io', '-f', 'qcow2', '-c', 'write -q -P 7 0 4M',
                    '-c', 'write -q -P 9 20M 6M', path], check=True,
                   capture_output=True)


class SharedQemuHosts:
    """host1 and host2, local QEMU hosts in a SQLite database, with the
    flavors tiny (1 vCPU, 64 MB, 1 GB root, 1 GB ephemeral, 16 MB swap)
    and bigger (2 vCPUs, 96 MB, 2 GB, 2 GB, 32 MB) and the image
    :data:`IMAGE`, set up once per test session (per pytest-xdist worker)
    by the CLI itself; :meth:`cli` runs ``resize-flows`` on them in a new
    process."""

    HOSTS = ('host1', 'host2')

    def __init__(self, base):
        self.base = base
        # Short: QEMU's monitor socket, <state_dir>/hosts/host1/config/
        # libvirt/qemu/lib/domain-<id>-instance-<uuid[:11]>/monitor.sock,
        # must fit in 107 bytes, and the domain id grows with every guest
        # started on the host: with "state" here the tenth start fails.
        self.state_dir = os.path.join(base, 's')
        self.connection = 'sqlite:///' + os.path.join(base, 'rf.sqlite')
        self.config_file = os.path.join(base, 'resize-flows.conf')
        with open(self.config_file, 'w') as handle:
            handle.write(crash_servers.with_plugins(_CRASH_CONFIG.format(
                state_dir=self.state_dir, connection=self.connection,
                lease_seconds=CRASH_LEASE_SECONDS)))

    def command(self, *args, fault=None):
        """(argv, env) of ``resize-flows --config-file <ours> ARGS``, with
        ``OS_TESTING__FAULTS=fault`` (and fault injection switched on)
        when given."""
        env = dict(os.environ)
        env.pop('OS_TESTING__FAULTS', None)
        env.pop(faults.SWITCH, None)
        if fault is not None:
            env['OS_TESTING__FAULTS'] = fault
            env[faults.SWITCH] = '1'
        return ([sys.executable, '-m', 'resize_flows.cmd.shell',
                 '--config-file', self.config_file] + list(args), env)

    def cli(self, *args, fault=None, timeout=300):
        """:meth:`command` run to its end in a new process. Returns the
        CompletedProcess (text stdout and stderr)."""
        argv, env = self.command(*args, fault=fault)
        return subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=timeout)

    def cli_ok(self, *args):
        """:meth:`cli`, which must succeed; its ``-f json`` output."""
        proc = self.cli(*(args + ('-f', 'json')))
        assert proc.returncode == 0, (args, proc.stderr)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def setup(self):
        self.cli_ok('db', 'sync')
        for name in self.HOSTS:
            self.cli_ok('host', 'create', name, '--vcpus', '4',
                        '--memory-mb', '1024', '--disk-gb', '20')
        self.cli_ok('flavor', 'create', 'tiny', '--vcpus', '1', '--ram',
                    '64', '--disk', '1', '--ephemeral', '1', '--swap', '16')
        self.cli_ok('flavor', 'create', 'bigger', '--vcpus', '2', '--ram',
                    '96', '--disk', '2', '--ephemeral', '2', '--swap',
                    '32')
        image = os.path.join(self.base, 'image.qcow2')
        make_image(image)
        self.cli_ok('image', 'create', IMAGE, '--file', image,
                    '--disk-format', 'qcow2')

    def stop(self):
        """Stop both hosts (their guests and daemons) in a new process."""
        return subprocess.run(
            [sys.executable, '-c', _STOP_HOSTS, self.config_file]
            + list(self.HOSTS), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='session')
def shared_qemu_hosts():
    """:class:`SharedQemuHosts` for the whole session: starting hosts is
    slow, and each test cleans up its own servers (see ``crash_cloud``).
    Stopped afterwards; no process of theirs may remain."""
    from resize_flows.conf import libvirt as libvirt_conf
    missing = _missing_tools()
    libvirtd = [o for o in libvirt_conf.opts
                if o.name == 'libvirtd_path'][0].default
    if not missing and not os.access(libvirtd, os.X_OK):
        missing = libvirtd
    if missing:
        pytest.skip('%s is not installed' % missing)
    base = tempfile.mkdtemp(prefix='rf-integ-', dir='/tmp')
    os.chmod(base, 0o755)
    hosts = SharedQemuHosts(base)
    try:
        hosts.setup()
        assert processes_under(base)
        yield hosts
    finally:
        stopped = hosts.stop()
        leftovers = processes_under(base)
        for pid in leftovers:
            # Ours (they run under our throwaway directory); never leave
            # them running, but still fail below.
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
        assert stopped.returncode == 0, stopped.stderr
        assert leftovers == [], 'processes left behind: %s' % leftovers


@pytest.fixture
def crash_cloud(conf, shared_qemu_hosts):
    """A :class:`CrashCloud` on the session's shared QEMU hosts. The
    test's servers are deleted afterwards (and purged if deleting is
    refused), so the next test starts from a cloud without any."""
    hosts = shared_qemu_hosts
    conf.set_override('state_dir', hosts.state_dir)
    conf.set_override('local_hypervisor', 'qemu', group='libvirt')
    conf.set_override('connection', hosts.connection, group='database')
    conf.set_override('lease_seconds', CRASH_LEASE_SECONDS, group='flows')
    crash_servers.enable(conf)
    virt.reset()
    faults.clear()
    cloud = crash_servers.CrashCloud(hosts, IMAGE)
    try:
        yield cloud
    finally:
        try:
            cloud.cleanup()
        finally:
            virt.reset()
            db_fixtures.forget_engines()
            conf.clear_override('connection', group='database')
            conf.clear_override('lease_seconds', group='flows')
            crash_servers.disable(conf)


# -- the test guest -----------------------------------------------------------

def _missing_guest_tools():
    for path in ('/usr/bin/qemu-system-x86_64', guest.BUSYBOX):
        if not os.access(path, os.X_OK):
            return path
    for tool in ('qemu-img', 'apt-get', 'dpkg-deb', 'cpio', 'genisoimage'):
        if shutil.which(tool) is None:
            return tool
    for tool in ('mke2fs', 'depmod'):
        if shutil.which(tool) is None and shutil.which(
                tool, path='/usr/sbin:/sbin') is None:
            return tool
    return None


@pytest.fixture(scope='session')
def guest_image():
    """(vmlinuz, initrd.img) of the test guest, built once (cached in
    ``guest.default_dir()``); skips, or fails on CI, when a tool to build
    or boot it is missing."""
    missing = _missing_guest_tools()
    if missing:
        needs.unavailable('%s is not installed' % missing,
                          'RESIZE_FLOWS_REQUIRE_GUEST',
                          'run make deps, which installs it')
    return guest.build(guest.default_dir())


def wait_for_guest_line(log_path, tag, timeout, dom=None, boot=None):
    """The guest's ``tag`` lines in the console log at ``log_path`` (of
    boot ``boot`` when given) once there is one; fails on a kernel panic,
    on ``dom`` (a libvirt domain) no longer running, or after ``timeout``
    seconds (generous: never a measure of speed)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(log_path, errors='replace') as handle:
                text = handle.read()
        except FileNotFoundError:
            text = ''
        found = [line for line in guest.parse_reports(text, tag)
                 if boot is None or line.get('boot') == boot]
        if found:
            return found
        assert 'Kernel panic' not in text, text[-3000:]
        assert dom is None or dom.isActive(), \
            'the guest stopped before %s:\n%s' % (tag, text[-3000:])
        assert time.monotonic() < deadline, \
            'no %s line in %ss:\n%s' % (tag, timeout, text[-3000:])
        time.sleep(0.2)
