"""The files of a host: on this machine, or on another one over ssh.

A host's instances path is either on the machine this process runs on
(:class:`LocalFiles`: system calls on descriptors, :mod:`.guarded` and
:mod:`.disk`) or on another machine (:class:`SshFiles`: the same
operations as shell commands run there over ssh, :mod:`.remote`). Both
have the same methods and the same guarantees: a file gets its final
name only when complete and synced, renames and removals are followed by
a sync of the directory, what is created under the instances path
belongs to the owner of the instances path (files 0600, directories
0700), and no link or file planted there by that user (the guests' user)
is followed or trusted.

A disk is copied between two hosts' files by :mod:`.transfer`; the
operations of the image cache (scan, sha256, remove a file...) are in
:mod:`.fileops`.
"""
import json
import os
import posixpath
import subprocess
import threading

from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import fileops
from resize_flows.virt.libvirt import guarded
from resize_flows.virt.libvirt import remote
from resize_flows.virt.libvirt import sparsecopy

#: Directory, next to a disk being received by rsync, of a cut-off copy.
RSYNC_PARTIAL_DIR = '.rsync-partial'


def for_host(host, instances_path, ssh=None):
    """The files of ``host``: on this machine, or on ``ssh``'s."""
    if ssh:
        return SshFiles(host, instances_path, ssh)
    return LocalFiles(host, instances_path)


class LocalFiles(fileops.LocalOps):
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

    def create_disk(self, path, size_bytes, backing=None,
                    backing_format=None):
        """A blank qcow2 disk made by qemu-img in a file of ours (it
        writes only through the descriptor we opened), then given to the
        owner (0600) and its name. With ``backing`` it is an overlay on
        that file of format ``backing_format``, which qemu-img does not
        open here (``-u``: the size is given)."""
        self.area.create_new(path, lambda fd: disk.run(
            self.host, 'qemu-img', 'create', '-q', '-f', 'qcow2',
            *_backing_args(backing, backing_format), '/dev/fd/%d' % fd,
            str(size_bytes), pass_fds=(fd,)))

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

    def read_tail(self, path, limit):
        """The last ``limit`` bytes of ``path``."""
        return self.area.read_tail(path, limit)

    def write_atomic(self, path, text):
        """Write ``text`` (str or bytes) to ``path`` atomically."""
        self.area.write_atomic(path, text, disk.PART_SUFFIX)

    def rename(self, old, new):
        self.area.rename(old, new)

    def rmtree(self, path):
        """Remove ``path`` and what it holds; False if it was not there."""
        return self.area.rmtree(path)

    def remove_copy_sidecar(self, dst):
        self.area.unlink(dst + disk.PART_SUFFIX + sparsecopy.PROGRESS_SUFFIX)

    def remove_rsync_temp(self, dst, partial=False):
        """Remove rsync's temporary files of ``dst`` (``.<name>.XXXXXX``),
        and with ``partial`` its partial copy in RSYNC_PARTIAL_DIR, and
        that directory when nothing else is in it (another file's partial
        copy there is kept for its own resume)."""
        folder, name = os.path.split(dst)
        for entry in self.listdir(folder):
            if _is_rsync_temp(entry, name):
                self.area.unlink(os.path.join(folder, entry))
        if partial:
            partial_dir = os.path.join(folder, RSYNC_PARTIAL_DIR)
            self.area.unlink(os.path.join(partial_dir, name))
            self.area.rmdir_if_empty(partial_dir)


class SshFiles(fileops.SshOps):
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
        remote.parse_address(address)
        self.host = host
        self.instances_path = os.path.normpath(instances_path)
        self.address = address
        self.machine = address

    def __repr__(self):
        return '<SshFiles %s %s:%s>' % (self.host, self.address,
                                        self.instances_path)

    # -- plumbing --------------------------------------------------------
    def run(self, script, stdin=None, check=True, as_owner=True,
            on_stderr=None):
        """Run the shell ``script`` on the machine (as the owner of the
        instances path, unless ``as_owner`` is False); its stdout (bytes).
        With ``check=False`` returns ``(status, stdout)`` instead of
        raising for a non-zero status of the script. ``on_stderr(line)``
        sees each line of its stderr as it comes (no ``stdin`` then); a
        line it returns True for is not part of an error message."""
        command = (remote.as_owner_command(self.instances_path, script)
                   if as_owner
                   else remote.remote_command(remote.GUARDS + script))
        argv = remote.ssh_argv(self.address) + ['--', command]
        try:
            if on_stderr is None:
                proc = subprocess.run(argv, input=stdin,
                                      capture_output=True, check=False)
            else:
                proc = _run_reading_stderr(argv, on_stderr)
        except OSError as exc:
            raise exception.HypervisorUnavailable(
                host=self.host, reason='%s: %s' % (argv[0], exc))
        if proc.returncode == remote.SSH_FAILED:
            raise exception.HypervisorUnavailable(
                host=self.host, reason='ssh %s: %s' % (
                    self.address, remote.last_line(proc.stderr)))
        if not check:
            return proc.returncode, proc.stdout
        if proc.returncode != 0:
            message = remote.last_line(proc.stderr or proc.stdout)
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
                       % remote.q(self.instances_path), as_owner=False).split()
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
        return self._test('test -d %s' % remote.q(self.instances_path),
                          as_owner=False)

    def exists(self, path):
        return self._test('test -e {0} || test -L {0}'.format(remote.q(path)))

    def isdir(self, path):
        return self._test('realdir {0}; test -d {0}'.format(remote.q(path)))

    def listdir(self, path):
        out = self.run('realdir {0}; if test -d {0}; then ls -1A {0}; '
                       'fi'.format(remote.q(path)))
        return sorted(line for line in out.decode().split('\n') if line)

    def getsize(self, path):
        out = self.run('plain {0}; if test -e {0}; then stat -c %s {0}; '
                       'fi'.format(remote.q(path))).strip()
        return int(out) if out else None

    def disk_info(self, path):
        out = self.run('realdir {1}; plain {0}; if test -e {0}; then '
                       'qemu-img info --output=json -U {0}; fi'.format(
                           remote.q(path), remote.q(posixpath.dirname(path))))
        return json.loads(out) if out.strip() else None

    def qemu_img(self, *args):
        paths = [a for a in args
                 if a.startswith(self.instances_path + posixpath.sep)]
        checks = ''.join('plain %s; ' % remote.q(a) for a in paths)
        return self.run(checks + ' '.join(
            ['qemu-img'] + [remote.q(a) for a in args])).decode()

    def create_disk(self, path, size_bytes, backing=None,
                    backing_format=None):
        part = path + disk.PART_SUFFIX
        folder = posixpath.dirname(path)
        q = remote.q
        create = ' '.join(['qemu-img create -q -f qcow2'] + [
            q(a) for a in _backing_args(backing, backing_format)])
        self.run('realdir %s; plain %s %s; ' % (q(folder), q(part), q(path))
                 + ' && '.join([
                     'rm -f %s' % q(part),
                     '%s %s %d' % (create, q(part), size_bytes),
                     'chmod 600 %s' % q(part), 'sync %s' % q(part),
                     'mv -f %s %s' % (q(part), q(path)),
                     'sync %s' % q(folder)]))

    def makedir(self, path):
        self.run('realdir {0}; test -d {0} || {{ mkdir -m 700 {0} && '
                 'sync {1}; }}'.format(remote.q(path),
                                       remote.q(posixpath.dirname(path))))

    def adopt(self, path):
        """Give the file ``path`` to the owner of the instances path (a
        copy received as root): the file itself (``chown -h``), never
        what a link points to, and only a file with no other link."""
        self.run('plain {0}; chown -h --reference={1} {0}'.format(
            remote.q(path), remote.q(self.instances_path)), as_owner=False)

    def read_text(self, path):
        status, out = self.run('realdir {1}; plain {0}; cat {0}'.format(
            remote.q(path), remote.q(posixpath.dirname(path))), check=False)
        if status != 0:
            raise OSError('cannot read %s on %s' % (path, self.address))
        return out.decode()

    def read_tail(self, path, limit):
        status, out = self.run('realdir {1}; plain {0}; tail -c {2} {0}'
                               .format(remote.q(path),
                                       remote.q(posixpath.dirname(path)),
                                       int(limit)), check=False)
        if status != 0:
            raise OSError('cannot read %s on %s' % (path, self.address))
        return out

    def write_atomic(self, path, text):
        part = path + disk.PART_SUFFIX
        folder = posixpath.dirname(path)
        q = remote.q
        self.run('realdir %s; plain %s %s; ' % (q(folder), q(part), q(path))
                 + ' && '.join([
                     'rm -f %s' % q(part), 'cat > %s' % q(part),
                     'sync %s' % q(part), 'mv -f %s %s' % (q(part), q(path)),
                     'sync %s' % q(folder)]), stdin=_bytes(text))

    def rename(self, old, new):
        q = remote.q
        self.run('realdir %s %s; mv -T %s %s && sync %s' % (
            q(old), q(new), q(old), q(new), q(posixpath.dirname(new))))

    def rmtree(self, path):
        out = self.run('realdir {0}; if test -e {0}; then rm -rf {0} && '
                       'sync {1} && echo removed; fi'.format(
                           remote.q(path), remote.q(posixpath.dirname(path))))
        return out.strip() == b'removed'

    def remove_copy_sidecar(self, dst):
        # rsync leaves no sidecar; a partial rsync copy is in the
        # destination directory, which goes with it.
        return None

    def remove_rsync_temp(self, dst, partial=False):
        folder, name = posixpath.split(dst)
        partial_dir = posixpath.join(folder, RSYNC_PARTIAL_DIR)
        # Before a copy too: rsync will write in RSYNC_PARTIAL_DIR.
        q = remote.q
        script = 'realdir %s %s; rm -f %s/.%s.??????' % (
            q(folder), q(partial_dir), q(folder), q(name))
        if partial:
            # Only this file's partial copy: another file's stays for its
            # own resume, and the directory goes once empty.
            script += ' && rm -f %s && { rmdir %s 2>/dev/null || :; }' % (
                q(posixpath.join(partial_dir, name)), q(partial_dir))
        self.run(script)


def _backing_args(backing, backing_format):
    if backing is None:
        return ()
    if not backing_format:
        raise ValueError('an overlay needs the format of %s' % backing)
    return ('-u', '-b', backing, '-F', backing_format)


def _bytes(text):
    return text if isinstance(text, bytes) else text.encode()


def _is_rsync_temp(entry, name):
    prefix = '.%s.' % name
    return entry.startswith(prefix) and len(entry) == len(prefix) + 6


def _run_reading_stderr(argv, on_stderr):
    """``subprocess.run(argv)`` whose stderr lines are given to
    ``on_stderr`` as they come (stdout is read by a thread meanwhile);
    the lines it did not take are the result's stderr."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()),
                              daemon=True)
    reader.start()
    kept = []
    try:
        for line in proc.stderr:
            if not on_stderr(line):
                kept.append(line)
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.wait()
        reader.join()
        proc.stdout.close()
        proc.stderr.close()
    return subprocess.CompletedProcess(argv, proc.returncode,
                                       out[0] if out else b'',
                                       b''.join(kept))
