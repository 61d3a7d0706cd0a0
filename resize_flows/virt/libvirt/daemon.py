"""The libvirt session daemon of a local QEMU host, and where it lives.

A local host (:mod:`.local` sets it up) is a directory under
``$state_dir/hosts/<name>/``; a ``qemu`` host's daemon keeps its socket,
pid file and logs there (see :mod:`.local` for the whole layout) and gets
its configuration through a short link (:func:`config_link`). This module
finds which host directory a session URI belongs to, starts the daemon
(:func:`ensure_daemon`, which :mod:`.host` calls before it connects),
finds it (:func:`daemon_pid`) and stops it (:func:`terminate`).
"""
import contextlib
import fcntl
import hashlib
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.parse

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import validation

SOCKET_RELPATH = os.path.join('run', 'libvirt', 'libvirt-sock')
PIDFILE_RELPATH = os.path.join('run', 'libvirt', 'libvirtd.pid')
GUEST_STATE_RELPATH = os.path.join('run', 'libvirt', 'qemu', 'run')
DAEMON_LOG_RELPATH = os.path.join('cache', 'libvirt', 'libvirtd.log')
START_LOG_NAME = 'libvirtd-start.log'
# Where libvirt puts a guest's QEMU monitor socket in session mode, below
# XDG_CONFIG_HOME, at its longest (domain id 99999, the domain's short name
# cut to 20 characters).
MONITOR_SOCKET_WORST = os.path.join(
    'libvirt', 'qemu', 'lib', 'domain-99999-instance-xxxxxxxx-xx',
    'monitor.sock')
LINK_BASE = '/tmp'


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


def remove_config_link(hdir):
    """Remove the :func:`config_link` of ``hdir`` if it still leads
    there."""
    link = os.path.join(LINK_BASE, '.resize-flows-%d' % os.geteuid(),
                        _link_name(hdir))
    if os.path.islink(link) and os.readlink(link) == os.path.join(
            os.path.abspath(hdir), 'config'):
        os.unlink(link)


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


def has_guest_state(hdir):
    state = os.path.join(hdir, GUEST_STATE_RELPATH)
    try:
        return any(entry.endswith('.xml') for entry in os.listdir(state))
    except OSError:
        return False


def terminate(pid, timeout):
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
