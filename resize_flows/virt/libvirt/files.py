"""The files of a host: on this machine, or on another one over ssh.

A host's instances path is either on the machine this process runs on
(:class:`LocalFiles`: plain system calls and :mod:`.disk`) or on another
machine (:class:`SshFiles`: the same operations as shell commands run
there over ssh). Both have the same methods and the same guarantees: a
file gets its final name only when complete and synced, renames and
removals are followed by a sync of the directory, and what is created
under the instances path gets the owner of the instances path.

:func:`copy_disk` moves a disk between two hosts, the way the pair
needs: a resumable sparse copy (:func:`disk.sparse_copy`) when both are
on this machine; rsync run on the machine when both are on one other
machine; rsync over ssh between two machines, pushed by the source.
rsync keeps a cut-off copy in ``.rsync-partial`` next to the
destination and the next run continues from it.
"""
import json
import os
import posixpath
import re
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.virt.libvirt import disk

#: Directory, next to a disk being received by rsync, of a cut-off copy.
RSYNC_PARTIAL_DIR = '.rsync-partial'
# exit status of ssh itself (not of the remote command) when it failed.
_SSH_FAILED = 255
# Nothing may start with '-': ssh would take it for an option.
_ADDRESS = re.compile(r'^(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?'
                      r'(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*'
                      r'|\[[0-9A-Fa-f:.]+\])'
                      r'(?::(?P<port>[0-9]{1,5}))?$')
_PERCENT = re.compile(rb'\s(\d{1,3})%\s')
# Seconds a stopped rsync has to save its partial file.
_STOP_GRACE = 10


def parse_address(address):
    """``(user or None, host, port or None)`` of ``[user@]host[:port]``;
    ``InvalidInput`` for anything else."""
    match = _ADDRESS.match(address or '')
    port = match and match.group('port')
    if not match or (port and not 0 < int(port) < 65536):
        raise exception.InvalidInput(
            reason='%r is not an ssh address ([user@]host[:port])'
            % (address,))
    return match.group('user'), match.group('host'), port and int(port)


def for_host(host, instances_path, ssh=None):
    """The files of ``host``: on this machine, or on ``ssh``'s."""
    if ssh:
        return SshFiles(host, instances_path, ssh)
    return LocalFiles(host, instances_path)


class LocalFiles:
    """Files of a host whose instances path is on this machine."""

    #: The machine the files are on: None is this one.
    machine = None

    def __init__(self, host, instances_path):
        self.host = host
        self.instances_path = os.path.abspath(instances_path)

    def _owner(self):
        return disk.owner_of(self.instances_path)

    def _failed(self, exc):
        return exception.DiskError(host=self.host, reason=str(exc))

    def has_root(self):
        return os.path.isdir(self.instances_path)

    def exists(self, path):
        return os.path.lexists(path)

    def isdir(self, path):
        return os.path.isdir(path)

    def listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []

    def getsize(self, path):
        try:
            return os.path.getsize(path)
        except FileNotFoundError:
            return None

    def disk_info(self, path):
        return disk.info(path, self.host)

    def qemu_img(self, *args):
        return disk._run(self.host, 'qemu-img', *args)

    def create_disk(self, path, size_bytes):
        disk.create(path, size_bytes, self.host, self._owner())

    def makedir(self, path):
        try:
            disk.makedir(path, self._owner())
        except OSError as exc:
            raise self._failed(exc)

    def adopt(self, path):
        """Give ``path`` the owner of the instances path."""
        try:
            disk.chown(path, self._owner())
        except OSError as exc:
            raise self._failed(exc)

    def read_text(self, path):
        with open(path) as handle:
            return handle.read()

    def write_atomic(self, path, text):
        disk.write_file_atomic(path, text, self._owner())

    def rename(self, old, new):
        os.rename(old, new)
        disk.fsync_dir(os.path.dirname(new))

    def rmtree(self, path):
        """Remove ``path`` and what it holds; False if it was not there."""
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            return False
        disk.fsync_dir(os.path.dirname(path))
        return True

    def remove_copy_sidecar(self, dst):
        disk.remove_copy_sidecar(dst)

    def remove_rsync_temp(self, dst, partial=False):
        """Remove rsync's temporary files of ``dst`` (``.<name>.XXXXXX``),
        and with ``partial`` its RSYNC_PARTIAL_DIR too."""
        folder, name = os.path.split(dst)
        for entry in self.listdir(folder):
            if _is_rsync_temp(entry, name):
                os.unlink(os.path.join(folder, entry))
        if partial:
            self.rmtree(os.path.join(folder, RSYNC_PARTIAL_DIR))


class SshFiles:
    """Files of a host whose instances path is on the machine at the ssh
    address ``[user@]host[:port]``: each operation is one command run
    there (over one shared connection, ``[remote]/ssh_control_persist``).
    A machine that does not answer is ``HypervisorUnavailable``; a
    command that fails there is ``DiskError``."""

    def __init__(self, host, instances_path, address):
        parse_address(address)
        self.host = host
        self.instances_path = os.path.normpath(instances_path)
        self.address = address
        self.machine = address

    def __repr__(self):
        return '<SshFiles %s %s:%s>' % (self.host, self.address,
                                        self.instances_path)

    # -- plumbing --------------------------------------------------------
    def run(self, script, stdin=None, check=True):
        """Run the shell ``script`` on the machine; its stdout (bytes).
        With ``check=False`` returns ``(status, stdout)`` instead of
        raising for a non-zero status of the script."""
        argv = ssh_argv(self.address) + ['--', remote_command(script)]
        try:
            proc = subprocess.run(argv, input=stdin, capture_output=True,
                                  check=False)
        except OSError as exc:
            raise exception.HypervisorUnavailable(
                host=self.host, reason='%s: %s' % (argv[0], exc))
        if proc.returncode == _SSH_FAILED:
            raise exception.HypervisorUnavailable(
                host=self.host, reason='ssh %s: %s' % (
                    self.address, _last_line(proc.stderr)))
        if not check:
            return proc.returncode, proc.stdout
        if proc.returncode != 0:
            raise exception.DiskError(
                host=self.host, reason='on %s: %s failed (%d): %s' % (
                    self.address, script, proc.returncode,
                    _last_line(proc.stderr or proc.stdout)))
        return proc.stdout

    def _test(self, script):
        status, _out = self.run(script, check=False)
        return status == 0

    def _adopt(self, path):
        # The owner of the instances path, by reference: uids differ
        # between machines.
        return 'chown --reference=%s %s' % (q(self.instances_path), q(path))

    # -- the operations ------------------------------------------------
    def has_root(self):
        return self._test('test -d %s' % q(self.instances_path))

    def exists(self, path):
        return self._test('test -e {0} || test -L {0}'.format(q(path)))

    def isdir(self, path):
        return self._test('test -d %s' % q(path))

    def listdir(self, path):
        out = self.run('if test -d {0}; then ls -1A {0}; fi'.format(q(path)))
        return sorted(line for line in out.decode().split('\n') if line)

    def getsize(self, path):
        out = self.run('if test -e {0}; then stat -c %s {0}; fi'.format(
            q(path))).strip()
        return int(out) if out else None

    def disk_info(self, path):
        out = self.run('if test -e {0}; then qemu-img info --output=json '
                       '-U {0}; fi'.format(q(path)))
        return json.loads(out) if out.strip() else None

    def qemu_img(self, *args):
        return self.run(' '.join(['qemu-img'] + [q(a) for a in args])
                        ).decode()

    def create_disk(self, path, size_bytes):
        part = path + disk.PART_SUFFIX
        self.run(' && '.join([
            'rm -f %s' % q(part),
            'qemu-img create -q -f qcow2 %s %d' % (q(part), size_bytes),
            self._adopt(part), 'sync %s' % q(part),
            'mv -f %s %s' % (q(part), q(path)),
            'sync %s' % q(os.path.dirname(path))]))

    def makedir(self, path):
        self.run('test -d {0} || {{ mkdir {0} && {1} && sync {2}; }}'.format(
            q(path), self._adopt(path), q(os.path.dirname(path))))

    def adopt(self, path):
        self.run(self._adopt(path))

    def read_text(self, path):
        status, out = self.run('cat %s' % q(path), check=False)
        if status != 0:
            raise OSError('cannot read %s on %s' % (path, self.address))
        return out.decode()

    def write_atomic(self, path, text):
        part = path + disk.PART_SUFFIX
        self.run(' && '.join([
            'cat > %s' % q(part), self._adopt(part), 'sync %s' % q(part),
            'mv -f %s %s' % (q(part), q(path)),
            'sync %s' % q(os.path.dirname(path))]), stdin=text.encode())

    def rename(self, old, new):
        self.run('mv -T %s %s && sync %s' % (
            q(old), q(new), q(os.path.dirname(new))))

    def rmtree(self, path):
        out = self.run('if test -e {0}; then rm -rf {0} && sync {1} && '
                       'echo removed; fi'.format(
                           q(path), q(os.path.dirname(path))))
        return out.strip() == b'removed'

    def remove_copy_sidecar(self, dst):
        # rsync leaves no sidecar; a partial rsync copy is in the
        # destination directory, which goes with it.
        return None

    def remove_rsync_temp(self, dst, partial=False):
        folder, name = os.path.split(dst)
        script = 'rm -f %s/.%s.??????' % (q(folder), q(name))
        if partial:
            script += ' && rm -rf %s' % q(posixpath.join(folder,
                                                         RSYNC_PARTIAL_DIR))
        self.run(script)


def _is_rsync_temp(entry, name):
    prefix = '.%s.' % name
    return entry.startswith(prefix) and len(entry) == len(prefix) + 6


def q(value):
    return shlex.quote(str(value))


def ssh_argv(address, control=True):
    """The ssh command (list) reaching ``address``, options of [remote]."""
    user, host, port = parse_address(address)
    argv = [CONF.remote.ssh_path]
    if CONF.remote.ssh_config_file:
        argv += ['-F', CONF.remote.ssh_config_file]
    if CONF.remote.ssh_identity_file:
        argv += ['-i', CONF.remote.ssh_identity_file]
    # ssh keeps the first value it is given: the operator's come first.
    for option in CONF.remote.ssh_options:
        argv += ['-o', option]
    # A machine that stops answering mid-command is given up after
    # three unanswered keep-alives.
    timeout = CONF.remote.ssh_connect_timeout
    argv += ['-o', 'BatchMode=yes', '-o', 'ConnectTimeout=%d' % timeout,
             '-o', 'ServerAliveInterval=%d' % timeout,
             '-o', 'ServerAliveCountMax=3']
    if control and CONF.remote.ssh_control_persist:
        argv += ['-o', 'ControlMaster=auto',
                 '-o', 'ControlPath=%s' % os.path.join(_control_dir(), '%C'),
                 '-o', 'ControlPersist=%d' % CONF.remote.ssh_control_persist]
    if port:
        argv += ['-p', str(port)]
    host = host.strip('[]')            # ssh takes an IPv6 address bare
    argv.append('%s@%s' % (user, host) if user else host)
    return argv


def _rsync_target(address, path):
    user, host, _port = parse_address(address)
    return '%s%s:%s' % (user + '@' if user else '', host, path)


def _rsync_ssh(address, control):
    # rsync's -e takes a command line; the address goes in the target.
    argv = ssh_argv(address, control=control)[:-1]
    return ' '.join(q(a) for a in argv)


def rsync_argv(src, dst, ssh=None, control=True):
    """rsync of one file: sparse, resumable from ``.rsync-partial``,
    synced before it gets its name, with progress on stdout."""
    argv = [CONF.remote.rsync_path, '--sparse', '--times',
            '--partial-dir=' + RSYNC_PARTIAL_DIR, '--fsync',
            '--info=progress2', '--stats', '--no-inc-recursive']
    argv += list(CONF.remote.rsync_options)
    if ssh is not None:
        argv += ['-e', _rsync_ssh(ssh, control)]
    return argv + ['--', src, dst]


def copy_disk(src_files, src, dst_files, dst, progress=None):
    """Copy the disk ``src`` of ``src_files`` to ``dst`` of ``dst_files``
    (whose directory exists), the way this pair of hosts needs (see the
    module). ``progress(fraction)`` is called as it goes; an exception it
    raises stops the copy, which the next call resumes. Returns a
    :class:`disk.CopyStats` (for rsync: ``copied`` is the data sent,
    ``reused`` what a cut-off earlier copy already held)."""
    if src_files.machine is None and dst_files.machine is None:
        return disk.sparse_copy(src, dst, dst_files.host,
                                disk.owner_of(dst_files.instances_path),
                                progress=progress)
    # What an rsync killed outright left: its temporary file (one that
    # was stopped kept its data in RSYNC_PARTIAL_DIR instead).
    dst_files.remove_rsync_temp(dst)
    if src_files.machine == dst_files.machine:
        # Both on one other machine: rsync runs there.
        argv = ssh_argv(src_files.address) + ['--', remote_command(
            _stopped_with_us(rsync_argv(src, dst)))]
    elif src_files.machine is None:
        argv = rsync_argv(src, _rsync_target(dst_files.address, dst),
                          ssh=dst_files.address)
    elif dst_files.machine is None:
        argv = rsync_argv(_rsync_target(src_files.address, src), dst,
                          ssh=src_files.address)
    else:
        # Two other machines: the source pushes, with the same ssh
        # options (its own control connections are not shared with ours).
        argv = ssh_argv(src_files.address) + ['--', remote_command(
            _stopped_with_us(rsync_argv(
                src, _rsync_target(dst_files.address, dst),
                ssh=dst_files.address, control=False)))]
    out = _run_with_progress(argv, src_files, dst_files, progress)
    dst_files.adopt(dst)
    # A copy stopped a moment ago may have saved its part only now.
    dst_files.remove_rsync_temp(dst, partial=True)
    return _rsync_stats(out)


def _stopped_with_us(argv):
    """A shell script running ``argv`` on another machine that stops it
    (SIGTERM, so rsync keeps its partial file) when our ssh goes away:
    its stdin, a pipe from this process, reaches its end. Without this
    the copy would go on there after this process stopped or died.

    POSIX gives a background command of a non-interactive shell
    /dev/null as its stdin (dash does; bash does not), so the watcher
    reads our pipe through a copy of it on fd 3."""
    return ('exec 3<&0; %s 3<&- </dev/null & c=$!; '
            '{ cat <&3 >/dev/null 2>&1; kill -TERM $c 2>/dev/null; '
            '} >/dev/null 2>&1 & w=$!; exec 3<&-; wait $c; s=$?; '
            'kill $w 2>/dev/null; exit $s' % ' '.join(q(a) for a in argv))


def remote_command(script):
    """The command line that runs the POSIX shell ``script`` on another
    machine, whatever the login shell of the user there (ssh hands the
    command to it): the same in sh, bash, dash, zsh or fish."""
    return 'exec /bin/sh -c %s' % q(script)


def _run_with_progress(argv, src_files, dst_files, progress):
    """Run ``argv``, passing rsync's percentages to ``progress``. The
    process (and what it started) is killed if ``progress`` raises or
    this process dies."""
    # stdin stays open, unused, for as long as this process wants the
    # copy (see _stopped_with_us).
    # stderr goes to a file: a pipe nobody reads while the copy runs
    # could fill up and stop it.
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen(_die_with_parent(argv), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errors,
                            start_new_session=True)
    done = 0.0
    out = b''
    try:
        if progress is not None:
            progress(0.0)
        while True:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                break
            out = (out + chunk)[-4096:]
            for match in _PERCENT.finditer(chunk):
                fraction = min(int(match.group(1)), 99) / 100.0
                if progress is not None and fraction > done:
                    done = fraction
                    progress(fraction)
        status = proc.wait()
        errors.seek(0)
        stderr = errors.read()
    except BaseException:
        _kill(proc)
        raise
    finally:
        proc.stdin.close()
        proc.stdout.close()
        errors.close()
    if status != 0:
        text = _last_line(stderr)
        unreachable = (status == _SSH_FAILED or 'connection unexpectedly '
                       'closed' in text or 'Could not resolve' in text
                       or 'Connection refused' in text)
        if unreachable:
            raise exception.HypervisorUnavailable(
                host='%s or %s' % (src_files.host, dst_files.host),
                reason='disk copy: %s' % text)
        raise exception.DiskError(
            host=dst_files.host, reason='rsync to %s failed (%d): %s' % (
                dst_files.host, status, text))
    if progress is not None:
        progress(1.0)
    return out


def _rsync_stats(out):
    text = out.decode(errors='replace').replace(',', '')

    def number(label):
        match = re.search(r'%s: (\d+)' % label, text)
        return int(match.group(1)) if match else 0
    return disk.CopyStats(size=number('Total file size'),
                          data=number('Total file size'),
                          copied=number('Literal data'),
                          reused=number('Matched data'))


def _kill(proc):
    """Stop rsync so that it keeps what it copied (SIGTERM: it moves
    the partial file into RSYNC_PARTIAL_DIR), then make sure it is gone."""
    for sig, wait in ((signal.SIGTERM, _STOP_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _last_line(data):
    lines = [ln for ln in (data or b'').decode(errors='replace').splitlines()
             if ln.strip()]
    return lines[-1].strip() if lines else 'no message'


def _control_dir():
    """The directory of ssh's control sockets: ours (this euid) and
    private (mode 0700), or ``HypervisorUnavailable``. Anyone may create
    a name in TMPDIR first: a directory of another user, or one others
    may enter, would give them our ssh connections (and the commands
    sent over them)."""
    # Short: a Unix socket path has at most 107 bytes.
    path = os.path.join(tempfile.gettempdir(),
                        'resize-flows-ssh-%d' % os.geteuid())
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if (not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid()
            or stat.S_IMODE(st.st_mode) & 0o077):
        raise exception.HypervisorUnavailable(
            host='ssh', reason='the ssh control directory %s is not a '
            'private directory of ours (uid %d, mode 0700): it is %s of '
            'uid %d, mode %04o; remove it or set [remote]/'
            'ssh_control_persist = 0' % (
                path, os.geteuid(),
                'a directory' if stat.S_ISDIR(st.st_mode) else 'not a '
                'directory', st.st_uid, stat.S_IMODE(st.st_mode)))
    return path


def _die_with_parent(argv):
    """``argv`` run so that it is killed when the thread that started it
    dies (setpriv --pdeathsig): the copy of a killed worker must not go
    on beside the one that takes over. SIGTERM lets rsync keep its
    partial file for the next copy."""
    setpriv = shutil.which('setpriv')
    if setpriv is None:
        return argv
    return [setpriv, '--pdeathsig', 'TERM', '--'] + argv
