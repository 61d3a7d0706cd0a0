"""A tiny real Linux guest that checks itself, and the disks it reads.

:func:`build` makes a kernel and an initramfs from Debian packages only,
as the invoking user and with no root: Debian's cloud kernel taken from
its .deb (``apt-get download`` and ``dpkg-deb -x``, never installed),
``busybox-static`` and the few modules the guest needs. The guest's
``/init`` prints one line per boot on the serial console::

    RF-REPORT {"boot": 1, "cpus": 2, "mem_kb": 223368,
               "disks": {"vda": 33554432, "vdb": 16777216, "vdc": 8388608},
               "files": {"vda": {"a.txt": "<sha256>"},
                         "vdb": {"guest-written": "<sha256>"}},
               "swap": {"vdc": 8188},
               "config_drive": {"label": "config-2", "uuid": "..."},
               "serials": {"vdd": "vol-6f1c"},
               "macs": {"eth0": "52:54:00:12:34:56",
                        "eth1": "fa:16:3e:5e:a1:13"},
               "mac": "52:54:00:12:34:56"}

(one line in truth): its vCPUs, MemTotal, each virtio disk's size in
bytes, the sha256 of every file under ``rf-data/`` of each ext4 disk, the
swap it took (each disk with a swap signature, its size in KiB as the
kernel counts it), the config drive's label and meta_data uuid (null
without one), each virtio disk's serial (``/sys/block/vdX/serial``, the
disks with a non-empty one: a volume's), every NIC's MAC but the
loopback's, eth0's MAC again (null without one) and a boot counter kept
on vda. Disks are in Nova's order: vda the root disk, vdb the ephemeral
disk, then the swap, and from vdd the plugins' disks (volumes); each
ext4 one is mounted read-only but vdb, mounted read-write: when it has
no ``rf-data/guest-written`` the guest writes one, 1 MiB of its own
making (a random uuid repeated: no two guests write the same), synced
before its report, so a move must carry it. Then a heartbeat line every
few seconds.

Each press of the ACPI power button prints ``RF-POWER-BUTTON {"boot",
"press", "action"}``; the first that is not ignored prints ``RF-SHUTDOWN
{"boot", "reason", "press"}``, syncs, unmounts and powers off. The kernel
command line's ``rf.ignore_acpi=N`` makes the guest ignore its first N
presses (action ``ignored``), as a guest busy elsewhere would; presses
after the shutdown began are ``stopping``.

:func:`make_data_disk` and :func:`make_config_drive` make the disks it
reads (no mount, no root); :func:`parse_reports` reads its console log.

The build is cached in its destination directory, keyed on what goes into
it (this module's source, which holds the module list, and
:mod:`.guestinit`'s, which holds the init scripts; the kernel package's
version; busybox), and each
result is written under a temporary name and renamed, so concurrent
builders end with one good copy; the newest few builds are kept, so that
checkouts of different versions can share the directory. ``python -m
resize_flows.testing.guest build DIR`` builds and prints the two paths.
"""
import argparse
import contextlib
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from resize_flows.testing import guestinit
from resize_flows.virt.libvirt import instancedir

KERNEL_META_PACKAGE = 'linux-image-cloud-amd64'
BUSYBOX = '/bin/busybox'
# What the guest needs, by name; their dependencies come from modprobe.
MODULES = ('virtio_pci', 'virtio_blk', 'virtio_net', 'ata_piix', 'sr_mod',
           'isofs', 'button', 'evdev')
# The init scripts and the tags of their lines (re-exported here).
DATA_DIR = guestinit.DATA_DIR
REPORT = guestinit.REPORT
SHUTDOWN = guestinit.SHUTDOWN
HEARTBEAT = guestinit.HEARTBEAT
POWER_BUTTON_PRESS = guestinit.POWER_BUTTON_PRESS
INIT = guestinit.INIT
POWER_BUTTON = guestinit.POWER_BUTTON
# Builds kept in a build directory (see _prune).
KEEP_BUILDS = 4


class GuestBuildError(Exception):
    """A step of the guest's build failed; the message says which."""


def default_dir():
    """Where ``make guest-image`` and the tests build the guest:
    ``$RESIZE_FLOWS_STATE_DIR`` or ``/var/tmp/rf-guest-<uid>``."""
    return os.environ.get('RESIZE_FLOWS_STATE_DIR') or \
        '/var/tmp/rf-guest-%d' % os.getuid()


def _tool(name):
    """The path of a tool that may live in an sbin directory that an
    unprivileged PATH lacks."""
    found = shutil.which(name) or shutil.which(
        name, path='/usr/local/sbin:/usr/sbin:/sbin')
    if found is None:
        raise GuestBuildError('%s is not installed' % name)
    return found


def _run(argv, cwd=None):
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise GuestBuildError('%s failed (exit %d): %s' % (
            ' '.join(argv), proc.returncode,
            (proc.stderr or proc.stdout).strip()))
    return proc.stdout


def kernel_package():
    """(versioned package name, its candidate version, kernel release) of
    the cloud kernel, from apt's lists (no download)."""
    out = _run(['apt-cache', 'depends', KERNEL_META_PACKAGE])
    name = None
    for line in out.splitlines():
        key, _, value = line.strip().partition(': ')
        if key == 'Depends' and value.startswith('linux-image-'):
            name = value.strip()
            break
    if name is None:
        raise GuestBuildError('no kernel package behind %s' %
                              KERNEL_META_PACKAGE)
    out = _run(['apt-cache', 'show', '--no-all-versions', name])
    version = None
    for line in out.splitlines():
        if line.startswith('Version: '):
            version = line.split(': ', 1)[1].strip()
            break
    if version is None:
        raise GuestBuildError('apt knows no version of %s' % name)
    return name, version, name[len('linux-image-'):]


def _file_sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def cache_key(package, version):
    """The hash of the build's inputs: a different key, a new build. The
    module list and the builder are this module's source, the init
    scripts :mod:`.guestinit`'s, so any change to either counts."""
    digest = hashlib.sha256()
    for part in (_file_sha256(__file__), _file_sha256(guestinit.__file__),
                 package, version, _file_sha256(BUSYBOX)):
        digest.update(part.encode() + b'\0')
    return digest.hexdigest()[:16]


def _fetch_deb(package, version, deb_dir):
    """The .deb of ``package`` at ``version`` in ``deb_dir``, downloaded
    once (into a temporary directory, then renamed)."""
    os.makedirs(deb_dir, exist_ok=True)
    name = '%s_%s_amd64.deb' % (package, version.replace(':', '%3a'))
    path = os.path.join(deb_dir, name)
    if os.path.exists(path):
        return path
    with tempfile.TemporaryDirectory(dir=deb_dir, prefix='.get-') as tmp:
        # apt drops to its _apt user when it can; it only warns when it
        # cannot write here, so make the directory reachable for it.
        os.chmod(tmp, 0o755)
        _run(['apt-get', 'download', '-q', '%s=%s' % (package, version)],
             cwd=tmp)
        got = [f for f in os.listdir(tmp) if f.endswith('.deb')]
        if len(got) != 1:
            raise GuestBuildError('apt-get download left %s' % got)
        os.replace(os.path.join(tmp, got[0]), path)
    for old in os.listdir(deb_dir):
        if old.startswith(package + '_') and old != name:
            os.unlink(os.path.join(deb_dir, old))
    return path


def _module_files(tree, release):
    """The .ko paths of MODULES and their dependencies, in load order."""
    _run([_tool('depmod'), '-b', tree, release])
    out = _run([_tool('modprobe'), '-d', tree, '-S', release,
                '--show-depends', '-a'] + list(MODULES))
    paths = []
    for line in out.splitlines():
        words = line.split()
        if words and words[0] == 'insmod' and words[1] not in paths:
            paths.append(words[1])
    return paths


def _write(path, data, mode):
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, mode)


def _initramfs_tree(root, modules):
    """Lay out the initramfs in ``root``: busybox and its applets, /init,
    the power-button action, the modules and their load order."""
    for sub in ('bin', 'dev', 'proc', 'sys', 'run', 'mnt', 'tmp',
                'etc/acpi/PWRF', 'lib/modules'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    shutil.copyfile(BUSYBOX, os.path.join(root, 'bin/busybox'))
    os.chmod(os.path.join(root, 'bin/busybox'), 0o755)
    for applet in sorted(set(_run([BUSYBOX, '--list']).split())):
        if applet != 'busybox':
            os.symlink('busybox', os.path.join(root, 'bin', applet))
    _write(os.path.join(root, 'init'), INIT.encode(), 0o755)
    _write(os.path.join(root, 'etc/acpi/PWRF/00000080'),
           POWER_BUTTON.encode(), 0o755)
    names = []
    for path in modules:
        name = os.path.basename(path).split('.ko')[0]
        shutil.copyfile(path, os.path.join(root, 'lib/modules',
                                           name + '.ko'))
        names.append(name)
    _write(os.path.join(root, 'etc/rf-modules'),
           ('\n'.join(names) + '\n').encode(), 0o644)
    # Same bytes from the same inputs: fixed modes and times.
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(top, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.path.isdir(path) or
                         os.access(path, os.X_OK) else 0o644)
            os.utime(path, (0, 0), follow_symlinks=False)
    os.chmod(root, 0o755)
    os.utime(root, (0, 0))


def _pack(root):
    """The gzipped newc cpio archive of ``root``, reproducibly."""
    names = []
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            names.append(os.path.relpath(os.path.join(top, name), root))
    listing = '.\n' + ''.join(n + '\n' for n in sorted(names))
    proc = subprocess.run(
        [_tool('cpio'), '--quiet', '-o', '-H', 'newc', '-R', '0:0',
         '--reproducible'], cwd=root, input=listing.encode(),
        capture_output=True, check=False)
    if proc.returncode != 0:
        raise GuestBuildError('cpio failed: %s' %
                              proc.stderr.decode(errors='replace').strip())
    return gzip.compress(proc.stdout, compresslevel=9, mtime=0)


def build(dest_dir=None):
    """Build the guest into ``dest_dir`` (:func:`default_dir` if None)
    unless a build of the same inputs is there; return the paths of its
    ``vmlinuz`` and ``initrd.img``."""
    dest_dir = os.path.abspath(dest_dir or default_dir())
    os.makedirs(dest_dir, exist_ok=True)
    package, version, release = kernel_package()
    key = cache_key(package, version)
    out = os.path.join(dest_dir, 'guest-' + key)
    paths = (os.path.join(out, 'vmlinuz'), os.path.join(out, 'initrd.img'))
    if all(os.path.exists(p) for p in paths):
        return paths
    for tool in (BUSYBOX,):
        if not os.access(tool, os.X_OK):
            raise GuestBuildError('%s is missing (Debian: busybox-static)'
                                  % tool)
    deb = _fetch_deb(package, version, os.path.join(dest_dir, 'debs'))
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix='.build-') as tmp:
        tree = os.path.join(tmp, 'kernel')
        _run(['dpkg-deb', '-x', deb, tree])
        modules = _module_files(tree, release)
        result = os.path.join(tmp, 'result')
        os.makedirs(result)
        shutil.copyfile(os.path.join(tree, 'boot', 'vmlinuz-' + release),
                        os.path.join(result, 'vmlinuz'))
        root = os.path.join(tmp, 'initramfs')
        os.makedirs(root)
        _initramfs_tree(root, modules)
        _write(os.path.join(result, 'initrd.img'), _pack(root), 0o644)
        os.chmod(os.path.join(result, 'vmlinuz'), 0o644)
        os.chmod(result, 0o755)
        try:
            os.rename(result, out)
        except OSError:
            # Another builder of the same inputs got there first; its
            # result is the same bytes.
            if not all(os.path.exists(p) for p in paths):
                raise
    _prune(dest_dir, keep=os.path.basename(out))
    return paths


def _prune(dest_dir, keep, count=KEEP_BUILDS):
    """Remove older builds from ``dest_dir``: all but ``keep`` and the
    newest others, ``count`` in all. Checkouts of different versions
    share the directory (``default_dir``), and one's build must not vanish
    under another's guest that is about to boot from it."""
    builds = []
    for name in os.listdir(dest_dir):
        if name.startswith('guest-') and name != keep:
            try:
                builds.append((os.stat(os.path.join(dest_dir, name))
                               .st_mtime, name))
            except FileNotFoundError:
                continue
    for _, name in sorted(builds, reverse=True)[count - 1:]:
        shutil.rmtree(os.path.join(dest_dir, name), ignore_errors=True)


def make_data_disk(path, files, size_mb=16, fmt='qcow2'):
    """A disk image at ``path`` holding an ext4 file system whose
    ``rf-data/`` holds ``files`` ({relative path: bytes}); ``fmt`` is
    qcow2 or raw. Made with ``mke2fs -d``: no mount, no root."""
    if fmt not in ('qcow2', 'raw'):
        raise ValueError('fmt must be qcow2 or raw, not %r' % fmt)
    path = os.path.abspath(path)
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path),
                                     prefix='.disk-') as tmp:
        data = os.path.join(tmp, 'fs', DATA_DIR)
        os.makedirs(data)
        for rel, content in files.items():
            target = os.path.join(data, rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, 'wb') as handle:
                handle.write(content)
        raw = os.path.join(tmp, 'disk.raw')
        _run([_tool('mke2fs'), '-q', '-F', '-t', 'ext4', '-d',
              os.path.join(tmp, 'fs'), raw, '%dM' % size_mb])
        made = raw
        if fmt == 'qcow2':
            made = os.path.join(tmp, 'disk.qcow2')
            _run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', raw,
                  made])
        os.chmod(made, 0o644)
        os.replace(made, path)
    return path


def make_config_drive(path, meta_data):
    """An ISO 9660 config drive at ``path``, labelled ``config-2``, with
    ``meta_data`` (a dict) as ``openstack/latest/meta_data.json``: the
    one a server's config drive is made as
    (:func:`.instancedir.iso_with_meta_data`), readable by all."""
    path = os.path.abspath(path)
    data = instancedir.iso_with_meta_data(meta_data)
    fd, part = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.cd-')
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(data)
        os.chmod(part, 0o644)
        os.replace(part, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise
    return path


def parse_reports(console_text, tag=REPORT):
    """The guest's ``tag`` lines (reports by default; SHUTDOWN or
    HEARTBEAT for those) in ``console_text`` as dicts, oldest first: the
    last is the latest boot's. Lines that do not parse are skipped."""
    found = []
    marker = tag + ' '
    for line in console_text.splitlines():
        at = line.find(marker)
        if at < 0:
            continue
        try:
            value = json.loads(line[at + len(marker):])
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m resize_flows.testing.guest',
        description='Build the resize-flows test guest.')
    sub = parser.add_subparsers(dest='command', required=True)
    cmd = sub.add_parser('build', help='build (or find cached) vmlinuz and '
                         'initrd.img; print their paths')
    cmd.add_argument('dir', nargs='?', default=None,
                     help='destination (default: $RESIZE_FLOWS_STATE_DIR '
                     'or /var/tmp/rf-guest-<uid>)')
    args = parser.parse_args(argv)
    try:
        for path in build(args.dir):
            print(path)
    except GuestBuildError as exc:
        print('guest build: %s' % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
