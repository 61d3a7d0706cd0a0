"""Simulated local hosts under ``$state_dir/hosts/<name>/``.

A ``qemu`` host is one libvirt *session* daemon with its own XDG
directories, so two hosts on one machine are two independent hypervisors::

    <host dir>/host.json          kind, uri, instances_path
    <host dir>/config/libvirt/    daemon config (qemu.conf), domain XML
    <host dir>/cache/libvirt/     daemon and guest logs (libvirtd.log)
    <host dir>/run/libvirt/       libvirt-sock, libvirtd.pid, guest state
    <host dir>/instances/         the host's instances path

libvirt runs a session daemon only for a non-root user, so when this
process is root the daemon runs as ``[libvirt]/session_user`` (created on
first use) and the host directory belongs to that user; QEMU runs as that
user too and must be able to open the disks. Otherwise the daemon runs as
the calling user.

A ``test`` host is libvirt's test driver, ``test:///<host dir>/node.xml``:
a private hypervisor inside the connection of this process, nothing runs.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.parse

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import validation
from resize_flows.virt.libvirt import disk

KIND_QEMU = 'qemu'
KIND_TEST = 'test'
KINDS = (KIND_QEMU, KIND_TEST)

SOCKET_RELPATH = os.path.join('run', 'libvirt', 'libvirt-sock')
PIDFILE_RELPATH = os.path.join('run', 'libvirt', 'libvirtd.pid')
GUEST_STATE_RELPATH = os.path.join('run', 'libvirt', 'qemu', 'run')
DAEMON_LOG_RELPATH = os.path.join('cache', 'libvirt', 'libvirtd.log')
START_LOG_NAME = 'libvirtd-start.log'
HOST_FILE = 'host.json'
# Where libvirt puts a guest's QEMU monitor socket in session mode, below
# XDG_CONFIG_HOME, at its longest (domain id 99999, the domain's short name
# cut to 20 characters).
MONITOR_SOCKET_WORST = os.path.join(
    'libvirt', 'qemu', 'lib', 'domain-99999-instance-xxxxxxxx-xx',
    'monitor.sock')
LINK_BASE = '/tmp'
# sockaddr_un.sun_path holds 108 bytes including the final NUL.
_MAX_SOCKET_PATH = 107

QEMU_CONF = 'stdio_handler = "file"\n'
NODE_XML = """<node>
  <cpu>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>%(cpus)d</cores>
    <threads>1</threads>
    <active>%(cpus)d</active>
    <mhz>2000</mhz>
    <model>x86_64</model>
  </cpu>
  <memory>%(memory_kib)d</memory>
</node>
"""
#: Modes of the directories made here: the state_dir and its hosts/ may be
#: entered (the session user reaches its host directory), not listed; a
#: host directory and all in it are its owner's only.
STATE_DIR_MODE = 0o711
HOST_DIR_MODE = 0o700
TEST_NODE_CPUS = 16
TEST_NODE_MEMORY_MB = 32768


def hosts_dir():
    return os.path.join(os.path.abspath(CONF.state_dir), 'hosts')


def host_dir(name):
    """Directory of the local host ``name``."""
    validation.check_host_name(name)
    return os.path.join(hosts_dir(), name)


def session_uri(hdir):
    return 'qemu+unix:///session?socket=' + os.path.join(hdir,
                                                         SOCKET_RELPATH)


def host_dir_of_uri(uri):
    """The host directory whose daemon serves ``uri``, or None when the
    URI is not the session socket of a local host of this state_dir."""
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme != 'qemu+unix' or parsed.path != '/session':
        return None
    sock = urllib.parse.parse_qs(parsed.query).get('socket', [None])[0]
    if not sock:
        return None
    sock = os.path.abspath(sock)
    hdir = os.path.dirname(os.path.dirname(os.path.dirname(sock)))
    if (os.path.dirname(hdir) != hosts_dir()
            or os.path.join(hdir, SOCKET_RELPATH) != sock):
        return None
    return hdir


def create_local_host(name, kind=None):
    """Create (or find) the local host ``name`` and return ``{'uri',
    'instances_path'}``. ``kind`` is ``'qemu'`` or ``'test'``, by default
    ``[libvirt]/local_hypervisor``. A ``qemu`` host's daemon is started
    and accepts connections when this returns. Calling it again for the
    same host returns the same values (and restarts a stopped daemon)."""
    kind = kind or CONF.libvirt.local_hypervisor
    if kind not in KINDS:
        raise exception.InvalidInput(reason='unknown host kind %r' % kind)
    hdir = host_dir(name)
    existing = _read_host_file(hdir)
    if existing and existing['kind'] != kind:
        raise exception.InvalidInput(
            reason='host %s exists as a %s host, not %s'
                   % (name, existing['kind'], kind))
    if kind == KIND_QEMU:
        _check_socket_path(hdir)
    _makedirs(hosts_dir(), STATE_DIR_MODE)
    if kind == KIND_TEST:
        result = _create_test_host(hdir)
    else:
        result = _create_qemu_host(name, hdir)
    if not existing:
        _write_json(hdir, HOST_FILE, dict(result, kind=kind))
    return result


def _create_test_host(hdir):
    instances = os.path.join(hdir, 'instances')
    _makedirs(instances, HOST_DIR_MODE)
    node = os.path.join(hdir, 'node.xml')
    if not os.path.exists(node):
        _write_text(node, NODE_XML % {
            'cpus': TEST_NODE_CPUS, 'memory_kib': TEST_NODE_MEMORY_MB * 1024})
    return {'uri': 'test://' + node, 'instances_path': instances}


def _check_socket_path(hdir):
    """Refuse a host directory whose daemon socket cannot fit in a Unix
    socket path. (The QEMU monitor sockets, deeper, live under the short
    :func:`config_link` instead.)"""
    sock = os.path.join(hdir, SOCKET_RELPATH)
    if len(os.fsencode(sock)) > _MAX_SOCKET_PATH:
        raise exception.InvalidInput(
            reason='the socket path %s is longer than a Unix socket path '
                   'may be (%d bytes): use a shorter state_dir or host name'
                   % (sock, _MAX_SOCKET_PATH))


def _link_name(hdir):
    return hashlib.sha256(os.fsencode(os.path.abspath(hdir))).hexdigest()[:16]


def config_link(hdir):
    """A short path to ``<hdir>/config``, given to the daemon as its
    XDG_CONFIG_HOME.

    libvirt puts each guest's QEMU monitor socket under that directory,
    ``libvirt/qemu/lib/domain-<id>-<name>/monitor.sock``, and a Unix socket
    path holds 107 bytes at most: below an ordinary state_dir it would not
    fit. The link, ``/tmp/.resize-flows-<uid>/<hash of hdir>``, always
    does; it is made again whenever the daemon starts (after a reboot
    emptied /tmp, say). Domain definitions stay in ``<hdir>/config``.
    """
    base = os.path.join(LINK_BASE, '.resize-flows-%d' % os.geteuid())
    try:
        os.mkdir(base, 0o755)
    except FileExistsError:
        pass
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise exception.HypervisorUnavailable(
            host=os.path.basename(hdir),
            reason='%s is not a directory of ours' % base)
    link = os.path.join(base, _link_name(hdir))
    target = os.path.join(os.path.abspath(hdir), 'config')
    if os.path.islink(link) and os.readlink(link) == target:
        return link
    tmp = '%s.%d.tmp' % (link, os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return link


def _create_qemu_host(name, hdir):
    owner = _session_owner()
    _check_reachable(name, os.path.dirname(hdir), owner)
    for sub in ('', 'config', os.path.join('config', 'libvirt'), 'cache',
                'run', 'instances'):
        path = os.path.join(hdir, sub)
        try:
            os.mkdir(path, HOST_DIR_MODE)
            if owner is not None:
                os.lchown(path, *owner)
        except FileExistsError:
            pass
        # The host directory is the session user's: what is in it may
        # have been put there by a guest. A link is never followed.
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != (
                owner[0] if owner else os.geteuid()):
            raise exception.HypervisorUnavailable(
                host=name, reason='refused: %s is not a directory of the '
                'session user (a link, a file, or of uid %d)'
                % (path, st.st_uid))
    qemu_conf = os.path.join(hdir, 'config', 'libvirt', 'qemu.conf')
    if not os.path.exists(qemu_conf):
        _write_text(qemu_conf, QEMU_CONF, owner)
    ensure_daemon(hdir)
    return {'uri': session_uri(hdir),
            'instances_path': os.path.join(hdir, 'instances')}


def ensure_daemon(hdir):
    """Start the libvirt daemon of the host in ``hdir`` unless it runs, and
    wait (``[libvirt]/daemon_start_timeout``) until it accepts connections.
    Safe to call from several threads or processes at once."""
    hdir = os.path.abspath(hdir)
    name = os.path.basename(hdir)
    sock = os.path.join(hdir, SOCKET_RELPATH)
    if _socket_accepts(sock):
        return
    if not os.path.isdir(os.path.join(hdir, 'config', 'libvirt')):
        raise exception.HypervisorUnavailable(
            host=name, reason='%s is not a local QEMU host' % hdir)
    deadline = time.monotonic() + CONF.libvirt.daemon_start_timeout
    with _host_lock(hdir):
        started = False
        # A daemon that runs but does not accept is starting, or shutting
        # down (SIGTERM: it closed its socket and exits soon): wait for
        # it, and start one when it is gone. A daemon that this call
        # started and that exited has failed.
        while not _socket_accepts(sock):
            if daemon_pid(hdir) is None:
                if started:
                    raise exception.HypervisorUnavailable(
                        host=name,
                        reason='libvirtd exited%s' % _log_tail(hdir))
                _start_daemon(name, hdir)
                started = True
                continue
            if time.monotonic() > deadline:
                raise exception.HypervisorUnavailable(
                    host=name, reason='libvirtd did not accept connections '
                    'on %s within %ss%s' % (
                        sock, CONF.libvirt.daemon_start_timeout,
                        _log_tail(hdir)))
            time.sleep(0.02)


def daemon_env(hdir):
    """The environment the libvirt session daemon of ``hdir`` runs in:
    its configuration, cache and socket all under ``hdir``."""
    return {
        'PATH': os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin'),
        'LANG': 'C.UTF-8',
        'HOME': hdir,
        'XDG_CONFIG_HOME': config_link(hdir),
        'XDG_CACHE_HOME': os.path.join(hdir, 'cache'),
        'XDG_RUNTIME_DIR': os.path.join(hdir, 'run'),
    }


def _start_daemon(name, hdir):
    st = os.stat(hdir)
    env = daemon_env(hdir)
    kwargs = {}
    if os.geteuid() == 0:
        if st.st_uid == 0:
            raise exception.HypervisorUnavailable(
                host=name, reason='%s belongs to root; a session daemon '
                'cannot run as root' % hdir)
        kwargs = {'user': st.st_uid, 'group': st.st_gid, 'extra_groups': []}
    log_path = os.path.join(hdir, START_LOG_NAME)
    with open(_open_nofollow(log_path, os.O_WRONLY | os.O_APPEND
                             | os.O_CREAT), 'ab') as log:
        try:
            # --daemon: the started process forks the daemon and exits once
            # the daemon has initialised (or failed to).
            proc = subprocess.Popen(
                [CONF.libvirt.libvirtd_path, '--daemon'], env=env, cwd=hdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True, **kwargs)
        except OSError as exc:
            raise exception.HypervisorUnavailable(
                host=name, reason='cannot run %s: %s'
                % (CONF.libvirt.libvirtd_path, exc))
    try:
        rc = proc.wait(timeout=CONF.libvirt.daemon_start_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = 'timeout'
    if rc != 0:
        raise exception.HypervisorUnavailable(
            host=name, reason='libvirtd failed to start (%s)%s'
            % (rc, _log_tail(hdir)))


def daemon_pid(hdir):
    """Pid of the running libvirt daemon of ``hdir``, or None."""
    try:
        with open(os.path.join(hdir, PIDFILE_RELPATH)) as handle:
            pid = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return None
    if pid <= 0 or not _pid_alive(pid):
        return None
    daemon = os.path.basename(CONF.libvirt.libvirtd_path)
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            argv0 = handle.read().split(b'\0')[0].decode(errors='replace')
        with open('/proc/%d/environ' % pid, 'rb') as handle:
            environ = handle.read().split(b'\0')
    except OSError:
        return None
    runtime = ('XDG_RUNTIME_DIR=' + os.path.join(hdir, 'run')).encode()
    if os.path.basename(argv0) != daemon or runtime not in environ:
        return None    # a reused pid
    return pid


def stop_local_host(name, destroy_guests=True):
    """Stop the local host ``name``: destroy its guests (unless
    ``destroy_guests`` is False: they keep running and a restarted daemon
    finds them again), stop its daemon and wait for it to exit. A test
    host has nothing running (``resize_flows.virt.reset()`` drops its
    in-process hypervisor). Safe to call repeatedly, or for no host."""
    hdir = host_dir(name)
    meta = _read_host_file(hdir)
    if meta is None or meta['kind'] != KIND_QEMU:
        return
    from resize_flows.virt.libvirt import host as libvirt_host
    libvirt_host.forget(meta['uri'])
    if destroy_guests and (daemon_pid(hdir) or _has_guest_state(hdir)):
        ensure_daemon(hdir)
        _destroy_all_guests(name, meta['uri'])
    pid = daemon_pid(hdir)
    if pid is not None:
        _terminate(pid, timeout=CONF.libvirt.daemon_start_timeout)


def remove_local_host(name):
    """Stop the local host ``name`` (destroying its guests) and remove its
    directory and its config link. Safe to call for no host."""
    stop_local_host(name)
    hdir = host_dir(name)
    link = os.path.join(LINK_BASE, '.resize-flows-%d' % os.geteuid(),
                        _link_name(hdir))
    if os.path.islink(link) and os.readlink(link) == os.path.join(
            os.path.abspath(hdir), 'config'):
        os.unlink(link)
    shutil.rmtree(hdir, ignore_errors=True)


def _destroy_all_guests(name, uri):
    import libvirt
    from resize_flows.virt.libvirt import host as libvirt_host
    libvirt_host.quiet_libvirt()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise exception.HypervisorUnavailable(host=name, reason=str(exc))
    gone = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)
    try:
        for dom in conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                dom.destroy()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in gone:
                    raise
    except libvirt.libvirtError as exc:
        raise exception.HypervisorError(host=name, reason=str(exc))
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _has_guest_state(hdir):
    state = os.path.join(hdir, GUEST_STATE_RELPATH)
    try:
        return any(entry.endswith('.xml') for entry in os.listdir(state))
    except OSError:
        return False


def _terminate(pid, timeout):
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.02)


def _pid_alive(pid):
    """True for a process that exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as handle:
            data = handle.read()
    except OSError:
        return False
    return data.rsplit(')', 1)[-1].split()[0] not in ('Z', 'X')


def _socket_accepts(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1)
    try:
        sock.connect(path)
    except OSError:
        return False
    finally:
        sock.close()
    return True


@contextlib.contextmanager
def _host_lock(hdir):
    """An exclusive lock on the host (between threads and processes)."""
    fd = _open_nofollow(os.path.join(hdir, '.lock'), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _session_owner():
    """(uid, gid) the daemons run as when root; None when not root."""
    if os.geteuid() != 0:
        return None
    user = CONF.libvirt.session_user
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        proc = subprocess.run(
            ['useradd', '--system', '--no-create-home', '--home-dir',
             '/nonexistent', '--shell', '/usr/sbin/nologin', user],
            capture_output=True, text=True, check=False)
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise exception.HypervisorUnavailable(
                host=user, reason='cannot create session user %s: %s'
                % (user, proc.stderr.strip()))
    if entry.pw_uid == 0:
        raise exception.InvalidInput(
            reason='[libvirt]/session_user %s is root' % user)
    return entry.pw_uid, entry.pw_gid


def _check_reachable(name, path, owner):
    """The daemon's user must be able to walk down to its host directory."""
    if owner is None:
        return
    uid, gid = owner
    groups = set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    path = os.path.abspath(path)
    while True:
        if os.path.exists(path):
            st = os.stat(path)
            if st.st_uid == uid:
                ok = st.st_mode & stat.S_IXUSR
            elif st.st_gid in groups:
                ok = st.st_mode & stat.S_IXGRP
            else:
                ok = st.st_mode & stat.S_IXOTH
            if not ok:
                raise exception.HypervisorUnavailable(
                    host=name, reason='the session user (uid %d) cannot '
                    'enter %s: give it search permission (chmod o+x) or '
                    'choose a [DEFAULT]/state_dir it can reach' % (uid, path))
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _log_tail(hdir, lines=8):
    out = []
    for rel in (START_LOG_NAME, DAEMON_LOG_RELPATH):
        try:
            with open(_open_nofollow(os.path.join(hdir, rel), os.O_RDONLY),
                      errors='replace') as handle:
                tail = handle.read().splitlines()[-lines:]
        except OSError:
            continue
        if tail:
            out.append('%s: %s' % (rel, ' | '.join(tail)))
    return ('; ' + '; '.join(out)) if out else ''


def _open_nofollow(path, flags):
    """A descriptor of ``path`` in a host directory (the session user's),
    not through a link (OSError then); a file made is 0600."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


def _makedirs(path, mode):
    """``os.makedirs`` where each directory made gets ``mode``."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path), mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass


def _read_host_file(hdir):
    try:
        with open(os.path.join(hdir, HOST_FILE)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise exception.HypervisorError(
            host=os.path.basename(hdir),
            reason='unreadable %s: %s' % (HOST_FILE, exc))


def _write_json(hdir, filename, data):
    _write_text(os.path.join(hdir, filename),
                json.dumps(data, indent=2, sort_keys=True) + '\n')


def _write_text(path, text, owner=None):
    disk.write_file_atomic(path, text, owner)
