"""The files of the ``volumes`` plugin, in ``[volumes]/volume_dir``.

The volume directory belongs to the user the guests run as (as root:
``[libvirt]/session_user``, the owner of local hosts' instances paths),
who may put anything there; so it is touched as an instances path is
(:mod:`resize_flows.virt.libvirt.guarded`): walked without following a
link, a volume file made by this process under a temporary name and
given to that user (0600) before it gets its name, and a file trusted
only when it is a regular file with one link of that user or ours. A
volume whose path is a link, or anything but such a file, is refused.
"""
import contextlib
import json
import os
import stat

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import guarded

#: The host name volume files' errors are reported under.
WHERE = 'volume_dir'
FORMATS = ('qcow2', 'raw')
GiB = 1024 ** 3


def volume_dir():
    return os.path.abspath(CONF.volumes.volume_dir)


def path_of(volume_id):
    return os.path.join(volume_dir(), 'volume-%s' % volume_id)


def area():
    return guarded.Area(volume_dir(), WHERE)


def _guests_user():
    """(uid, gid) of the user the guests of local hosts run as, when this
    process is root and they are QEMU's (``[libvirt]/session_user``, the
    owner of their instances paths); None otherwise (ours, as the
    instances paths of libvirt's test driver are)."""
    if os.geteuid() != 0 or CONF.libvirt.local_hypervisor != 'qemu':
        return None
    from resize_flows.virt.libvirt import local
    return local._session_owner()


def ensure_dir():
    """Make the volume directory (0700, the guests' user's) unless it is
    there; one that is there (made by an operator on shared storage, with
    the owner the guests run as there) must be a directory, not a
    link."""
    path = volume_dir()
    st = _lstat(path)
    if st is None:
        parent = os.path.dirname(path)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        owner = _guests_user()
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if owner is not None and os.fstat(fd).st_uid == os.geteuid():
                os.fchown(fd, *owner)
        finally:
            os.close(fd)
        st = _lstat(path)
    if st is None or not stat.S_ISDIR(st.st_mode):
        raise disk.refused(WHERE, path, 'is %s, not a directory'
                           % ('nothing' if st is None else disk.kind(st)))


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def create(path, size_gb, disk_format):
    """A blank volume file at ``path`` (qemu-img, ``disk_format``,
    ``size_gb`` GiB), made under a temporary name of ours, given to the
    guests' user and then named; something at ``path`` already is
    refused."""
    ensure_dir()
    area().create_new(path, lambda fd: disk.run(
        WHERE, 'qemu-img', 'create', '-q', '-f', disk_format,
        '/dev/fd/%d' % fd, str(size_gb * GiB), pass_fds=(fd,)))


def check(path):
    """Refuse (DiskError, "refused: ...") unless ``path`` is a regular
    volume file we may trust (no link); DiskError "no file" when it is
    missing. Returns its stat."""
    try:
        return area().check_file(path)
    except FileNotFoundError:
        raise exception.DiskError(host=WHERE, reason='no file %s' % path)


def exists(path):
    try:
        return area().lstat(path) is not None
    except (FileNotFoundError, exception.DiskError):
        return False


def info(path):
    """``qemu-img info`` of the checked volume file (as the guests'
    user)."""
    check(path)
    return json.loads(area().run_as_owner(
        'qemu-img', 'info', '--output=json', '-U', path))


def remove(path):
    """Remove the volume file (a link there is removed, not followed);
    False if there was none."""
    try:
        return area().unlink(path)
    except FileNotFoundError:
        return False
