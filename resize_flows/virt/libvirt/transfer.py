"""Copy a disk between the files of two hosts.

:func:`copy_disk` moves a disk between two hosts (:mod:`.files`), the
way the pair needs: a resumable sparse copy
(:func:`.sparsecopy.sparse_copy`) when both are on this machine; rsync
run on the machine when both are on one other machine; rsync over ssh
between two machines, pushed by the source. rsync keeps a cut-off copy
in ``.rsync-partial`` (:data:`.files.RSYNC_PARTIAL_DIR`) next to the
destination and the next run continues from it.
"""
import contextlib
import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import files
from resize_flows.virt.libvirt import remote
from resize_flows.virt.libvirt import sparsecopy

_PERCENT = re.compile(rb'([\d,]+)\s+(\d{1,3})%\s')
# Seconds between two calls of a copy's progress while rsync says
# nothing: the caller's chance to stop it (an abort, a stall).
TICK = 1.0
# Seconds a stopped rsync has to save its partial file.
_STOP_GRACE = 10


def _rsync_target(address, path):
    user, host, _port = remote.parse_address(address)
    return '%s%s:%s' % (user + '@' if user else '', host, path)


def _rsync_ssh(address, control):
    # rsync's -e takes a command line; the address goes in the target.
    argv = remote.ssh_argv(address, control=control)[:-1]
    return ' '.join(remote.q(a) for a in argv)


def rsync_argv(src, dst, ssh=None, control=True, copy_links=False,
               rsync_path=None):
    """rsync of one file: sparse, resumable from ``.rsync-partial``,
    synced before it gets its name, mode 0600, with progress on stdout.
    ``copy_links``: ``src`` is a ``/dev/fd/N`` of a file opened (and
    checked) before; ``rsync_path``: the command of the rsync at the
    other end."""
    argv = [CONF.remote.rsync_path, '--sparse', '--times',
            '--partial-dir=' + files.RSYNC_PARTIAL_DIR, '--fsync',
            '--chmod=F600', '--info=progress2', '--stats',
            '--no-inc-recursive']
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
            'esac; ').format(remote.q(src), remote.q(instances_path))


def copy_disk(src_files, src, dst_files, dst, progress=None, total=None):
    """Copy the disk ``src`` of ``src_files`` to ``dst`` of ``dst_files``
    (whose directory exists), the way this pair of hosts needs (see the
    module). ``progress(fraction)`` is called as it goes, and at least
    every :data:`TICK` seconds while rsync says nothing (with the same
    fraction: no byte moved); an exception it raises stops the copy
    (rsync is killed), which the next call resumes. ``total``: the
    source's size in bytes, for a fraction of rsync's bytes rather than
    its whole percents. Returns a
    :class:`.sparsecopy.CopyStats` (for rsync: ``copied`` is the data sent,
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
            return sparsecopy.sparse_copy(src, dst, dst_files.host,
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
            argv = remote.ssh_argv(src_files.address) + [
                '--', remote.as_owner_command(dst_files.instances_path,
                                              script)]
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
            argv = remote.ssh_argv(src_files.address) + [
                '--', remote.remote_command(remote.GUARDS + script)]
        out = _run_with_progress(argv, src_files, dst_files, progress,
                                 pass_fds=pass_fds, total=total)
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
    partial = os.path.join(os.path.dirname(dst), files.RSYNC_PARTIAL_DIR)
    st = area.lstat(partial)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise area.refused(partial, 'is %s, not a directory'
                           % disk.kind(st))
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
            'kill $w 2>/dev/null; exit $s'
            % ' '.join(remote.q(a) for a in argv))


def _run_with_progress(argv, src_files, dst_files, progress, pass_fds=(),
                       total=None):
    """Run ``argv``, passing rsync's progress to ``progress`` (bytes of
    ``total`` when given, else its percentages), and the same fraction
    again every :data:`TICK` seconds of silence. The process (and what
    it started) is killed if ``progress`` raises or this process dies."""
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
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        with selector:
            while True:
                if not selector.select(TICK):
                    if progress is not None:
                        progress(done)
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                out = (out + chunk)[-4096:]
                for match in _PERCENT.finditer(chunk):
                    fraction = _fraction(match, total)
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
        text = remote.last_line(stderr)
        unreachable = (status == remote.SSH_FAILED
                       or 'connection unexpectedly closed' in text
                       or 'Could not resolve' in text
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


def _fraction(match, total):
    """The fraction copied of an rsync progress line's match."""
    if total:
        sent = int(match.group(1).replace(b',', b''))
        return min(sent / float(total), 0.99)
    return min(int(match.group(2)), 99) / 100.0


def _rsync_stats(out):
    text = out.decode(errors='replace').replace(',', '')

    def number(label):
        match = re.search(r'%s: (\d+)' % label, text)
        return int(match.group(1)) if match else 0
    return sparsecopy.CopyStats(size=number('Total file size'),
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


def _die_with_parent(argv):
    """``argv`` run so that it is killed when the thread that started it
    dies (setpriv --pdeathsig): the copy of a killed worker must not go
    on beside the one that takes over. SIGTERM lets rsync keep its
    partial file for the next copy."""
    setpriv = shutil.which('setpriv')
    if setpriv is None:
        return argv
    return [setpriv, '--pdeathsig', 'TERM', '--'] + argv
