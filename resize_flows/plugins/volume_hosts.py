"""Is a volume's file there, on the host about to connect it?

``[volumes]/volume_dir`` is shared storage, mounted at the same path on
every host; a host where it is not mounted (or where the file is
missing, a link, or of another size) would fail later, when QEMU opens
the disk. :func:`check_on_host` looks at the file on that host, through
the host's own file access (this machine's guarded paths for a local
host, one guarded command over ssh for another machine), before a move
or an attach connects the volume there, and refuses with one line that
names the host and the path.

"The recorded size" is the volume's ``size_gb``: a raw file is that
long; a qcow2 file says it in its header (virtual size, bytes 24-31).
"""
import os
import struct

from resize_flows import exception
from resize_flows.plugins import volume_files
from resize_flows.virt.libvirt import remote

GiB = 1024 ** 3
#: The first bytes of a file read to know its format and virtual size.
_HEAD = 32
_QCOW2_MAGIC = b'QFI\xfb'


def _local(path):
    """(size, head) of the file ``path`` here (checked: no link), or
    None when there is none."""
    area = volume_files.area()
    try:
        with area.open_file(path) as fd:
            return os.fstat(fd).st_size, os.pread(fd, _HEAD, 0)
    except FileNotFoundError:
        return None


def _remote(files, path):
    """(size, head) of the file ``path`` on the machine of ``files``
    (an ``SshFiles``: ``refused: ...`` for a link, a directory or a hard
    link), or None when there is none."""
    out = files.run(
        'realdir {1}; plain {0}; if test -e {0}; then stat -c %s -- {0} && '
        'head -c {2} -- {0} | od -An -v -tx1; else echo none; fi'.format(
            remote.q(path), remote.q(os.path.dirname(path)), _HEAD))
    words = out.split()
    if not words or words[0] == b'none':
        return None
    return int(words[0]), bytes(int(w, 16) for w in words[1:])


def _virtual_size(disk_format, size, head):
    if disk_format == 'raw':
        return size
    if head[:4] != _QCOW2_MAGIC or len(head) < 32:
        return None
    return struct.unpack('>Q', head[24:32])[0]


def check_on_host(drv, vol):
    """Refuse (``DiskError``, one line naming the host and the path)
    unless the volume record ``vol``'s file is on the host of the driver
    ``drv`` a regular file with one link, of the recorded format and
    size."""
    path = vol['path']
    if drv.ssh is None:
        found = _local(path)
    else:
        found = _remote(drv.files, path)

    def refuse(why):
        return exception.DiskError(
            host=drv.host, reason='volume %s: %s %s there (is [volumes]/'
            'volume_dir mounted on that host?)' % (vol['id'], path, why))

    if found is None:
        raise refuse('is missing')
    size, head = found
    want = vol['size_gb'] * GiB
    got = _virtual_size(vol['disk_format'], size, head)
    if got is None:
        raise refuse('is not a %s file' % vol['disk_format'])
    if got != want:
        raise refuse('is %d bytes, not %d (%d GiB)'
                     % (got, want, vol['size_gb']))
