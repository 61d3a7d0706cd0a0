"""The files of a host: on this machine, or on another one over ssh.

A host's instances path is either on the machine this process runs on
(:class:`LocalFiles`: system calls on descriptors, :mod:`.guarded` and
:mod:`.disk`) or on another machine (:class:`SshFiles`: the same
operations as shell commands run there over ssh). Both have the same
methods and the same guarantees: a file gets its final name only when
complete and synced, renames and removals are followed by a sync of the
directory, what is created under the instances path belongs to the owner
of the instances path (files 0600, directories 0700), and no link or file
planted there by that user (the guests' user) is followed or trusted.

:func:`copy_disk` moves a disk between two hosts, the way the pair
needs: a resumable sparse copy (:func:`disk.sparse_copy`) when both are
on this machine; rsync run on the machine when both are on one other
machine; rsync over ssh between two machines, pushed by the source.
rsync keeps a cut-off copy in ``.rsync-partial`` next to the
destination and the next run continues from it.
"""
import contextlib
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
from resize_flows.virt.libvirt import guarded

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
    """Files of a host whose instances path is on this machine, touched
    as :mod:`.guarded` says: no link followed, no file trusted that this
    process did not make, qemu-img run as the owner of the path."""

    #: The machine the files are on: None is this one.
    machine = None

    def __init__(self, host, instances_path):
        self.host = host
        self.instances_path = os.path.abspath(instances_path)
        self.area = guarded.Area(self.instances_path, host)

    def _failed(self, exc):
        return exception.DiskError(host=self.host, reason=str(exc))

    def has_root(self):
        return os.path.isdir(self.instances_path)

    def exists(self, path):
        return self.area.exists(path)

    def isdir(self, path):
        return self.area.isdir(path)

    def listdir(self, path):
        return self.area.listdir(path)

    def getsize(self, path):
        return self.area.getsize(path)

    def disk_info(self, path):
        st = self.area.lstat(path)
        if st is None:
            return None
        self.area.check_file(path, st)
        return json.loads(self.area.run_as_owner(
            'qemu-img', 'info', '--output=json', '-U', path))

    def qemu_img(self, *args):
        for arg in args:
            if arg.startswith(self.instances_path + os.sep):
                self.area.check_file(arg)
        return self.area.run_as_owner('qemu-img', *args)

    def create_disk(self, path, size_bytes):
        """A blank qcow2 disk made by qemu-img in a file of ours (it
        writes only through the descriptor we opened), then given to the
        owner (0600) and its name."""
        part = path + disk.PART_SUFFIX
        with self.area.parent(path) as (dfd, name):
            fd = self.area.create(dfd, name + disk.PART_SUFFIX, part)
            try:
                disk.run(self.host, 'qemu-img', 'create', '-q', '-f',
                         'qcow2', '/dev/fd/%d' % fd, str(size_bytes),
                         pass_fds=(fd,))
                self.area.give(fd)
                os.fsync(fd)
                st = guarded._lstat(name, dfd)
                if st is not None:
                    raise self.area.refused(path, 'is there already (%s)'
                                            % guarded._kind(st))
                os.rename(name + disk.PART_SUFFIX, name, src_dir_fd=dfd,
                          dst_dir_fd=dfd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(name + disk.PART_SUFFIX, dir_fd=dfd)
                raise
            finally:
                os.close(fd)
            os.fsync(dfd)

    def makedir(self, path):
        try:
            self.area.makedir(path)
        except OSError as exc:
            raise self._failed(exc)

    def adopt(self, path):
        """Give the file ``path`` to the owner of the instances path."""
        try:
            self.area.adopt(path)
        except OSError as exc:
            raise self._failed(exc)

    def read_text(self, path):
        return self.area.read_text(path)

    def write_atomic(self, path, text):
        self.area.write_atomic(path, text, disk.PART_SUFFIX)

    def rename(self, old, new):
        self.area.rename(old, new)

    def rmtree(self, path):
        """Remove ``path`` and what it holds; False if it was not there."""
        return self.area.rmtree(path)

    def remove_copy_sidecar(self, dst):
        self.area.unlink(dst + disk.PART_SUFFIX + disk.PROGRESS_SUFFIX)

    def remove_rsync_temp(self, dst, partial=False):
        """Remove rsync's temporary files of ``dst`` (``.<name>.XXXXXX``),
        and with ``partial`` its RSYNC_PARTIAL_DIR too."""
        folder, name = os.path.split(dst)
        for entry in self.listdir(folder):
            if _is_rsync_temp(entry, name):
                self.area.unlink(os.path.join(folder, entry))
        if partial:
            self.rmtree(os.path.join(folder, RSYNC_PARTIAL_DIR))


class SshFiles:
    """Files of a host whose instances path is on the machine at the ssh
    address ``[user@]host[:port]``: each operation is one command run
    there (over one shared connection, ``[remote]/ssh_control_persist``).
    A machine that does not answer is ``HypervisorUnavailable``; a
    command that fails there is ``DiskError``.

    When the user there is root and the instances path belongs to another
    user (the one the guests run as), the commands run as that user
    (``setpriv``, umask 077): a link planted there leads them nowhere that
    user could not go. They also refuse, with a clear message, a link, a
    directory or a hard-linked file found where they read or write."""

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
    def run(self, script, stdin=None, check=True, as_owner=True):
        """Run the shell ``script`` on the machine (as the owner of the
        instances path, unless ``as_owner`` is False); its stdout (bytes).
        With ``check=False`` returns ``(status, stdout)`` instead of
        raising for a non-zero status of the script."""
        command = (as_owner_command(self.instances_path, script) if as_owner
                   else remote_command(_GUARDS + script))
        argv = ssh_argv(self.address) + ['--', command]
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
            message = _last_line(proc.stderr or proc.stdout)
            if message.startswith('refused: '):
                raise exception.DiskError(host=self.host, reason='on %s: %s'
                                          % (self.address, message))
            raise exception.DiskError(
                host=self.host, reason='on %s: %s failed (%d): %s' % (
                    self.address, script, proc.returncode, message))
        return proc.stdout

    def _test(self, script, as_owner=True):
        status, _out = self.run(script, check=False, as_owner=as_owner)
        return status == 0

    def owner(self):
        """(uid, gid) the commands there run as when it is not the user
        ssh logs in as (root there, another owner of the instances
        path), or None."""
        out = self.run('echo "$(id -u) $(stat -L -c %%u:%%g -- %s)"'
                       % q(self.instances_path), as_owner=False).split()
        if len(out) != 2:
            raise exception.DiskError(
                host=self.host, reason='on %s: no instances path %s' % (
                    self.address, self.instances_path))
        uid, gid = (int(n) for n in out[1].split(b':'))
        if out[0] == b'0' and uid != 0:
            return uid, gid
        return None

    # -- the operations ------------------------------------------------
    def has_root(self):
        return self._test('test -d %s' % q(self.instances_path),
                          as_owner=False)

    def exists(self, path):
        return self._test('test -e {0} || test -L {0}'.format(q(path)))

    def isdir(self, path):
        return self._test('realdir {0}; test -d {0}'.format(q(path)))

    def listdir(self, path):
        out = self.run('realdir {0}; if test -d {0}; then ls -1A {0}; '
                       'fi'.format(q(path)))
        return sorted(line for line in out.decode().split('\n') if line)

    def getsize(self, path):
        out = self.run('plain {0}; if test -e {0}; then stat -c %s {0}; '
                       'fi'.format(q(path))).strip()
        return int(out) if out else None

    def disk_info(self, path):
        out = self.run('realdir {1}; plain {0}; if test -e {0}; then '
                       'qemu-img info --output=json -U {0}; fi'.format(
                           q(path), q(posixpath.dirname(path))))
        return json.loads(out) if out.strip() else None

    def qemu_img(self, *args):
        paths = [a for a in args
                 if a.startswith(self.instances_path + posixpath.sep)]
        checks = ''.join('plain %s; ' % q(a) for a in paths)
        return self.run(checks + ' '.join(['qemu-img'] + [q(a) for a in args])
                        ).decode()

    def create_disk(self, path, size_bytes):
        part = path + disk.PART_SUFFIX
        folder = posixpath.dirname(path)
        self.run('realdir %s; plain %s %s; ' % (q(folder), q(part), q(path))
                 + ' && '.join([
                     'rm -f %s' % q(part),
                     'qemu-img create -q -f qcow2 %s %d' % (q(part),
                                                           size_bytes),
                     'chmod 600 %s' % q(part), 'sync %s' % q(part),
                     'mv -f %s %s' % (q(part), q(path)),
                     'sync %s' % q(folder)]))

    def makedir(self, path):
        self.run('realdir {0}; test -d {0} || {{ mkdir -m 700 {0} && '
                 'sync {1}; }}'.format(q(path),
                                       q(posixpath.dirname(path))))

    def adopt(self, path):
        """Give the file ``path`` to the owner of the instances path (a
        copy received as root): the file itself (``chown -h``), never
        what a link points to, and only a file with no other link."""
        self.run('plain {0}; chown -h --reference={1} {0}'.format(
            q(path), q(self.instances_path)), as_owner=False)

    def read_text(self, path):
        status, out = self.run('realdir {1}; plain {0}; cat {0}'.format(
            q(path), q(posixpath.dirname(path))), check=False)
        if status != 0:
            raise OSError('cannot read %s on %s' % (path, self.address))
        return out.decode()

    def write_atomic(self, path, text):
        part = path + disk.PART_SUFFIX
        folder = posixpath.dirname(path)
        self.run('realdir %s; plain %s %s; ' % (q(folder), q(part), q(path))
                 + ' && '.join([
                     'rm -f %s' % q(part), 'cat > %s' % q(part),
                     'sync %s' % q(part), 'mv -f %s %s' % (q(part), q(path)),
                     'sync %s' % q(folder)]), stdin=text.encode())

    def rename(self, old, new):
        self.run('realdir %s %s; mv -T %s %s && sync %s' % (
            q(old), q(new), q(old), q(new), q(posixpath.dirname(new))))

    def rmtree(self, path):
        out = self.run('realdir {0}; if test -e {0}; then rm -rf {0} && '
                       'sync {1} && echo removed; fi'.format(
                           q(path), q(posixpath.dirname(path))))
        return out.strip() == b'removed'

    def remove_copy_sidecar(self, dst):
        # rsync leaves no sidecar; a partial rsync copy is in the
        # destination directory, which goes with it.
        return None

    def remove_rsync_temp(self, dst, partial=False):
        folder, name = posixpath.split(dst)
        partial_dir = posixpath.join(folder, RSYNC_PARTIAL_DIR)
        # Before a copy too: rsync will write in RSYNC_PARTIAL_DIR.
        script = 'realdir %s %s; rm -f %s/.%s.??????' % (
            q(folder), q(partial_dir), q(folder), q(name))
        if partial:
            script += ' && rm -rf %s' % q(partial_dir)
        self.run(script)


#: Shell functions of the commands run on another machine: ``refuse``
#: what is not what it should be, with a message that starts with
#: "refused: " (on stderr, exit 3); ``plain PATH...``: each is absent or
#: a regular file with one link (no symbolic link, no directory, no hard
#: link); ``realdir PATH...``: each is absent or a directory, not a link.
_GUARDS = (
    'refuse() { echo "refused: $1 $2; resize-flows follows no link and '
    'trusts no file it did not make in an instances path (nothing was '
    'changed)" >&2; exit 3; }; '
    'plain() { for f; do if [ -L "$f" ]; then refuse "$f" "is a symbolic '
    'link"; elif [ -d "$f" ]; then refuse "$f" "is a directory"; elif '
    '[ -e "$f" ]; then [ -f "$f" ] || refuse "$f" "is not a regular file"; '
    'n=$(stat -c %h -- "$f") || exit 3; [ "$n" = 1 ] || refuse "$f" '
    '"has $n hard links"; fi; done; }; '
    'realdir() { for d; do if [ -L "$d" ]; then refuse "$d" "is a symbolic '
    'link, not a directory"; elif [ -e "$d" ] && [ ! -d "$d" ]; then '
    'refuse "$d" "is not a directory"; fi; done; }; ')

# Runs "$2" as the owner of the directory "$1" when that is not root and
# we are root; umask 077 either way.
_AS_OWNER = (
    'umask 077; '
    'if [ "$(id -u)" = 0 ] && o=$(stat -L -c %u:%g -- "$1" 2>/dev/null) '
    '&& [ "${o%:*}" != 0 ]; then exec setpriv --reuid="${o%:*}" '
    '--regid="${o#*:}" --clear-groups -- /bin/sh -c "$2"; fi; '
    'exec /bin/sh -c "$2"')


def as_owner_command(instances_path, script):
    """The command line that runs ``script`` on another machine as the
    owner of ``instances_path`` there (see :class:`SshFiles`)."""
    return 'exec /bin/sh -c %s rf %s %s' % (
        q(_AS_OWNER), q(instances_path), q(_GUARDS + script))


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


def rsync_argv(src, dst, ssh=None, control=True, copy_links=False,
               rsync_path=None):
    """rsync of one file: sparse, resumable from ``.rsync-partial``,
    synced before it gets its name, mode 0600, with progress on stdout.
    ``copy_links``: ``src`` is a ``/dev/fd/N`` of a file opened (and
    checked) before; ``rsync_path``: the command of the rsync at the
    other end."""
    argv = [CONF.remote.rsync_path, '--sparse', '--times',
            '--partial-dir=' + RSYNC_PARTIAL_DIR, '--fsync', '--chmod=F600',
            '--info=progress2', '--stats', '--no-inc-recursive']
    if copy_links:
        argv.append('--copy-links')
    argv += list(CONF.remote.rsync_options)
    if ssh is not None:
        argv += ['-e', _rsync_ssh(ssh, control)]
    if rsync_path is not None:
        argv.append('--rsync-path=' + rsync_path)
    return argv + ['--', src, dst]


def _rsync_as(owner):
    """The command of an rsync on another machine run as ``owner`` (see
    :meth:`SshFiles.owner`), or None: as the user ssh logs in as."""
    if owner is None:
        return None
    return ('setpriv --reuid=%d --regid=%d --clear-groups -- rsync'
            % owner)


def _open_source(src, instances_path):
    """Shell lines that open the disk ``src`` on fd 4 and refuse it unless
    what was opened is a regular file with one link of the owner of
    ``instances_path`` (or of root): checked on the open file, so a link
    put there meanwhile cannot make root read one of its own files."""
    return ('plain {0}; exec 4< {0} || exit 3; '
            'f=$(stat -L -c %h:%u:%F /dev/fd/4) || exit 3; '
            'o=$(stat -L -c %u -- {1}) || exit 3; case "$f" in '
            '"1:$o:regular file"|"1:$o:regular empty file"|'
            '"1:0:regular file"|"1:0:regular empty file") ;; '
            '*) refuse {0} "is not a file of its own of uid $o ($f)";; '
            'esac; ').format(q(src), q(instances_path))


def copy_disk(src_files, src, dst_files, dst, progress=None):
    """Copy the disk ``src`` of ``src_files`` to ``dst`` of ``dst_files``
    (whose directory exists), the way this pair of hosts needs (see the
    module). ``progress(fraction)`` is called as it goes; an exception it
    raises stops the copy, which the next call resumes. Returns a
    :class:`disk.CopyStats` (for rsync: ``copied`` is the data sent,
    ``reused`` what a cut-off earlier copy already held).

    No link planted in either instances path is followed: the source is
    read through a descriptor of a file checked once opened (rsync sends
    ``/dev/fd/N``), or by an rsync run as the source's owner; the copy is
    written by an rsync run as the destination's owner on another
    machine. (On this machine rsync receives as root: the directory and
    what is in it are checked before it starts.)"""
    if src_files.machine is None and dst_files.machine is None:
        # The source is read through a descriptor of a file of the
        # source's owner (no link, no other link), the copy written in a
        # directory walked without following links.
        with src_files.area.open_file(src) as src_fd, \
                dst_files.area.parent(dst) as (dst_dir_fd, _name):
            return disk.sparse_copy(src, dst, dst_files.host,
                                    dst_files.area.owner(),
                                    progress=progress, src_fd=src_fd,
                                    dst_dir_fd=dst_dir_fd)
    # What an rsync killed outright left: its temporary file (one that
    # was stopped kept its data in RSYNC_PARTIAL_DIR instead).
    dst_files.remove_rsync_temp(dst)
    with contextlib.ExitStack() as stack:
        pass_fds = ()
        if src_files.machine == dst_files.machine:
            # Both on one other machine: rsync runs there, as the owner
            # of the destination's instances path.
            script = _open_source(src, src_files.instances_path) + \
                _stopped_with_us(rsync_argv('/dev/fd/4', dst,
                                            copy_links=True))
            argv = ssh_argv(src_files.address) + ['--', as_owner_command(
                dst_files.instances_path, script)]
        elif src_files.machine is None:
            src_fd = stack.enter_context(src_files.area.open_file(src))
            pass_fds = (src_fd,)
            argv = rsync_argv('/dev/fd/%d' % src_fd,
                              _rsync_target(dst_files.address, dst),
                              ssh=dst_files.address, copy_links=True,
                              rsync_path=_rsync_as(dst_files.owner()))
        elif dst_files.machine is None:
            _check_local_target(dst_files, dst)
            argv = rsync_argv(_rsync_target(src_files.address, src), dst,
                              ssh=src_files.address,
                              rsync_path=_rsync_as(src_files.owner()))
        else:
            # Two other machines: the source pushes (as the user ssh logs
            # in as, whose keys it uses), with the same ssh options (its
            # own control connections are not shared with ours).
            script = _open_source(src, src_files.instances_path) + \
                _stopped_with_us(rsync_argv(
                    '/dev/fd/4', _rsync_target(dst_files.address, dst),
                    ssh=dst_files.address, control=False, copy_links=True,
                    rsync_path=_rsync_as(dst_files.owner())))
            argv = ssh_argv(src_files.address) + ['--', remote_command(
                _GUARDS + script)]
        out = _run_with_progress(argv, src_files, dst_files, progress,
                                 pass_fds=pass_fds)
    dst_files.adopt(dst)
    # A copy stopped a moment ago may have saved its part only now.
    dst_files.remove_rsync_temp(dst, partial=True)
    return _rsync_stats(out)


def _check_local_target(dst_files, dst):
    """Before rsync, as root, receives ``dst`` on this machine: its
    directory (walked), ``dst`` and RSYNC_PARTIAL_DIR must be what they
    should, not links."""
    area = dst_files.area
    st = area.lstat(dst)
    if st is not None:
        area.check_file(dst, st)
    partial = os.path.join(os.path.dirname(dst), RSYNC_PARTIAL_DIR)
    st = area.lstat(partial)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise area.refused(partial, 'is %s, not a directory'
                           % guarded._kind(st))
    if st is not None:
        for entry in area.listdir(partial):
            area.check_file(os.path.join(partial, entry))


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


def _run_with_progress(argv, src_files, dst_files, progress, pass_fds=()):
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
                            start_new_session=True, pass_fds=pass_fds)
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
