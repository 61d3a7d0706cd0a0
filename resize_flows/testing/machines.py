"""Other machines for tests: each an sshd with a file system of its own.

A :class:`Machine` is an OpenSSH server on 127.0.0.1 started in a mount
namespace of its own (``unshare --mount``), where its ``root`` directory
is a private directory bind-mounted over an empty one. Outside, ``root``
stays empty: what a host keeps under it exists only for commands that
come in over ssh, as on another machine. A test that passes with a host
on such a machine therefore did every file operation of that host over
ssh.

Needs root (for the mount namespace), ``/usr/sbin/sshd`` (Debian's
openssh-server), ``ssh``, ``ssh-keygen`` and ``rsync``. :func:`unavailable`
tells why they cannot run here. :class:`Keys` is the client side shared
by the machines of a test: one key pair, a known_hosts file with each
machine's host key, and the ``[remote]`` options that use them.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time

SSHD = '/usr/sbin/sshd'
_PRIVSEP_DIR = '/run/sshd'
_START_TIMEOUT = 20

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {keys}/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
MaxStartups 200
MaxSessions 200
LogLevel ERROR
# bash reads ~/.bashrc for a command that comes over ssh; this machine's
# own (root's) may be slow. The machine's HOME is its directory instead.
SetEnv HOME={dir}
"""


def unavailable():
    """Why test machines cannot run here, or None."""
    for tool in ('ssh', 'ssh-keygen', 'rsync', 'unshare'):
        if shutil.which(tool) is None:
            return '%s is not installed' % tool
    if not os.access(SSHD, os.X_OK):
        return '%s is not installed (Debian: openssh-server)' % SSHD
    if os.geteuid() != 0:
        return 'a mount namespace of its own needs root'
    probe = subprocess.run(['unshare', '--mount', 'true'],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return 'unshare --mount failed: %s' % probe.stderr.strip()
    return None


class Keys:
    """The client side: a key pair and a known_hosts file in ``path``."""

    def __init__(self, path=None):
        self.path = path or tempfile.mkdtemp(prefix='rf-ssh-keys-')
        self.identity = os.path.join(self.path, 'id_ed25519')
        self.known_hosts = os.path.join(self.path, 'known_hosts')
        if not os.path.exists(self.identity):
            _keygen(self.identity)
        shutil.copyfile(self.identity + '.pub',
                        os.path.join(self.path, 'authorized_keys'))
        open(self.known_hosts, 'a').close()

    def conf_overrides(self):
        """``{option: value}`` of [remote] that use these keys."""
        return {'ssh_identity_file': self.identity,
                'ssh_options': ['StrictHostKeyChecking=yes',
                                'UserKnownHostsFile=' + self.known_hosts,
                                'LogLevel=ERROR']}

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


class Machine:
    """An sshd on 127.0.0.1:``port`` whose ``root`` is its own."""

    def __init__(self, keys, base=None, login_shell=None):
        self.keys = keys
        #: root's login shell on the machine (None: this machine's).
        self.login_shell = login_shell
        self.dir = tempfile.mkdtemp(prefix='rf-machine-', dir=base)
        # QEMU of a session daemon, not root, must reach the disks below.
        os.chmod(self.dir, 0o755)
        self.root = os.path.join(self.dir, 'root')
        self._private = os.path.join(self.dir, 'private')
        self.port = None
        self.proc = None

    @property
    def address(self):
        return 'root@127.0.0.1:%d' % self.port

    def path(self, *parts):
        """A path under the machine's own ``root``."""
        return os.path.join(self.root, *parts)

    def start(self, attempts=3):
        """Start the sshd; on a port another process took between our
        pick and its bind, again on another port."""
        os.makedirs(self.root)
        os.makedirs(self._private)
        os.makedirs(_PRIVSEP_DIR, mode=0o755, exist_ok=True)
        _keygen(os.path.join(self.dir, 'host_key'))
        with open(os.path.join(self.dir, 'host_key.pub')) as handle:
            kind, key = handle.read().split()[:2]
        for attempt in range(attempts):
            self.port = _free_port()
            with open(self._known_hosts, 'w') as handle:
                handle.write('[127.0.0.1]:%d %s %s\n' % (self.port, kind,
                                                         key))
            try:
                self._start_sshd()
                # The sshd that answers is this one: it has our host key.
                self.run('true')
                break
            except (RuntimeError, subprocess.CalledProcessError):
                self.stop()
                if attempt == attempts - 1:
                    raise
        with open(self.keys.known_hosts, 'a') as handle:
            handle.write('[127.0.0.1]:%d %s %s\n' % (self.port, kind, key))
        return self

    @property
    def _known_hosts(self):
        return os.path.join(self.dir, 'known_hosts')

    def _start_sshd(self):
        config = os.path.join(self.dir, 'sshd_config')
        with open(config, 'w') as handle:
            handle.write(SSHD_CONFIG.format(port=self.port, dir=self.dir,
                                            keys=self.keys.path))
        script = 'mount --bind "$1" "$2" && '
        passwd = os.path.join(self.dir, 'passwd')
        if self.login_shell:
            # The machine's own /etc/passwd, where root logs in to it.
            with open('/etc/passwd') as handle:
                lines = handle.read().splitlines()
            with open(passwd, 'w') as handle:
                for line in lines:
                    fields = line.split(':')
                    if fields[0] == 'root':
                        fields[-1] = self.login_shell
                    handle.write(':'.join(fields) + '\n')
            script += 'mount --bind "$5" /etc/passwd && '
        script += 'exec "$3" -D -e -f "$4"'
        log = open(os.path.join(self.dir, 'sshd.log'), 'w')
        self.proc = subprocess.Popen(
            ['unshare', '--mount', '--propagation', 'private', '--',
             'sh', '-c', script, 'machine', self._private, self.root, SSHD,
             config, passwd], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        self._wait_ready()

    def _wait_ready(self):
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('sshd of %s exited (%s): %s' % (
                    self.dir, self.proc.returncode, self.log_tail()))
            try:
                with socket.create_connection(('127.0.0.1', self.port), 0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError('sshd of %s does not answer: %s'
                                       % (self.dir, self.log_tail()))
                time.sleep(0.05)

    def run(self, script):
        """Run ``script`` on the machine (as a test's check); its stdout."""
        argv = ['ssh', '-i', self.keys.identity, '-p', str(self.port),
                '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes',
                '-o', 'UserKnownHostsFile=' + self._known_hosts,
                'root@127.0.0.1', '--', script]
        return subprocess.run(argv, capture_output=True, text=True,
                              check=True, timeout=60).stdout

    def log_tail(self):
        try:
            with open(os.path.join(self.dir, 'sshd.log')) as handle:
                return handle.read()[-2000:].strip() or 'no log'
        except OSError:
            return 'no log'

    def pids(self):
        """Every process in the machine's mount namespace."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            mine = os.readlink('/proc/%d/ns/mnt' % self.proc.pid)
        except OSError:
            return []
        out = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                if os.readlink('/proc/%s/ns/mnt' % entry) == mine:
                    out.append(int(entry))
            except OSError:
                continue
        return out

    def stop(self):
        """Kill everything running on the machine (its sessions too)."""
        for pid in self.pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _keygen(path):
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C',
                    'resize-flows-test', '-f', path], check=True,
                   capture_output=True)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]
