"""What a disk image file is, by ``qemu-img info``, and the rules an image
must meet before the image store takes it.

An image is qcow2 or raw. A qcow2 image stands alone: no backing file and
no external data file (either would make the image name a file outside
the store, which a later copy would read as root). A raw image is a whole
number of 512-byte sectors, which a text file (or any file that is not a
disk) rarely is: qemu-img calls every file it does not recognise raw.
Every refusal is :class:`~resize_flows.exception.InvalidInput`, one line.
"""
import json
import subprocess

from resize_flows import exception

FORMATS = ('qcow2', 'raw')
SECTOR = 512


def _refuse(reason):
    return exception.InvalidInput(reason=reason)


def _info(path, disk_format=None):
    args = ['qemu-img', 'info', '--output=json', '-U']
    if disk_format:
        args += ['-f', disk_format]
    try:
        proc = subprocess.run(args + [path], capture_output=True, text=True,
                              check=False, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _refuse('qemu-img info %s: %s' % (path, exc))
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ['']
        return None, lines[-1].strip()
    return json.loads(proc.stdout), None


def inspect(path, disk_format=None):
    """``{'disk_format', 'virtual_size'}`` of the image file at ``path``,
    or InvalidInput when it is no image resize-flows takes: not qcow2 or
    raw, not the ``disk_format`` given, a qcow2 with a backing or data
    file, a raw file that is not whole sectors."""
    if disk_format is not None and disk_format not in FORMATS:
        raise _refuse('disk format %r: use one of %s'
                      % (disk_format, ', '.join(FORMATS)))
    probed, error = _info(path)
    if probed is None:
        raise _refuse('%s is not a disk image qemu-img can read: %s'
                      % (path, error))
    found = probed.get('format')
    if found not in FORMATS:
        raise _refuse('%s is a %s image; images are %s'
                      % (path, found, ' or '.join(FORMATS)))
    if disk_format is not None:
        given, error = _info(path, disk_format)
        if found != disk_format or given is None:
            raise _refuse('%s is %s, not %s (--disk-format)'
                          % (path, found, disk_format))
        probed = given
    if probed.get('backing-filename') or probed.get('full-backing-filename'):
        raise _refuse('%s has a backing file (%s); an image must stand '
                      'alone' % (path, probed.get('backing-filename')
                                 or probed.get('full-backing-filename')))
    specific = (probed.get('format-specific') or {}).get('data') or {}
    if specific.get('data-file'):
        raise _refuse('%s has an external data file (%s); an image must '
                      'stand alone' % (path, specific['data-file']))
    if found == 'raw':
        actual = _file_size(path)
        if actual == 0 or actual % SECTOR:
            raise _refuse('%s is not a disk image: %d bytes is not a whole '
                          'number of %d-byte sectors' % (path, actual,
                                                          SECTOR))
        size = actual
    else:
        size = probed['virtual-size']
    return {'disk_format': found, 'virtual_size': size}


def check_same(path, expected):
    """Refuse the file at ``path`` unless :func:`inspect` finds it as
    ``expected`` (a copy checked again: the source may have changed
    between its check and its copy)."""
    found = inspect(path, expected['disk_format'])
    if found != expected:
        raise _refuse('the image changed while it was copied (%s, then %s)'
                      % (expected, found))


def _file_size(path):
    with open(path, 'rb') as f:
        return f.seek(0, 2)
