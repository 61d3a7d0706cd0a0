"""Simulated local hosts under ``$state_dir/hosts/<name>/``.

A ``qemu`` host is one libvirt *session* daemon with its own XDG
directories, so two hosts on one machine are two independent hypervisors::

    <host dir>/host.json          kind, uri, instances_path
    <host dir>/config/libvirt/    daemon config (qemu.conf), domain XML
    <host dir>/cache/libvirt/     daemon and guest logs (libvirtd.log)
    <host dir>/run/libvirt/       libvirt-sock, libvirtd.pid, guest state
    <host dir>/instances/         the host's instances path

libvirt runs a session daemon only for a non-root user, so when this
process is root the daemon runs as ``[libvirt]/session_user`` (created on
first use) and the host directory belongs to that user; QEMU runs as that
user too and must be able to open the disks. Otherwise the daemon runs as
the calling user.

A ``test`` host is libvirt's test driver, ``test:///<host dir>/node.xml``:
a private hypervisor inside the connection of this process, nothing runs.

This module sets a host directory up (:func:`create_local_host`), and
stops and removes hosts; the daemon itself (starting, finding, stopping
it) and where a host's directory is are :mod:`.daemon`'s.
"""
import contextlib
import json
import os
import pwd
import shutil
import stat
import subprocess

import libvirt

from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.virt.libvirt import daemon
from resize_flows.virt.libvirt import disk
from resize_flows.virt.libvirt import host as libvirt_host

KIND_QEMU = 'qemu'
KIND_TEST = 'test'
KINDS = (KIND_QEMU, KIND_TEST)
HOST_FILE = 'host.json'
# sockaddr_un.sun_path holds 108 bytes including the final NUL.
_MAX_SOCKET_PATH = 107

QEMU_CONF = 'stdio_handler = "file"\n'
NODE_XML = """<node>
  <cpu>
    <nodes>1</nodes>
    <sockets>1</sockets>
    <cores>%(cpus)d</cores>
    <threads>1</threads>
    <active>%(cpus)d</active>
    <mhz>2000</mhz>
    <model>x86_64</model>
  </cpu>
  <memory>%(memory_kib)d</memory>
</node>
"""
#: Modes of the directories made here: the state_dir and its hosts/ may be
#: entered (the session user reaches its host directory), not listed; a
#: host directory and all in it are its owner's only.
STATE_DIR_MODE = 0o711
HOST_DIR_MODE = 0o700
TEST_NODE_CPUS = 16
TEST_NODE_MEMORY_MB = 32768


def create_local_host(name, kind=None):
    """Create (or find) the local host ``name`` and return ``{'uri',
    'instances_path'}``. ``kind`` is ``'qemu'`` or ``'test'``, by default
    ``[libvirt]/local_hypervisor``. A ``qemu`` host's daemon is started
    and accepts connections when this returns. Calling it again for the
    same host returns the same values (and restarts a stopped daemon)."""
    kind = kind or CONF.libvirt.local_hypervisor
    if kind not in KINDS:
        raise exception.InvalidInput(reason='unknown host kind %r' % kind)
    hdir = daemon.host_dir(name)
    existing = _read_host_file(hdir)
    if existing and existing['kind'] != kind:
        raise exception.InvalidInput(
            reason='host %s exists as a %s host, not %s'
                   % (name, existing['kind'], kind))
    if kind == KIND_QEMU:
        _check_socket_path(hdir)
    _makedirs(daemon.hosts_dir(), STATE_DIR_MODE)
    if kind == KIND_TEST:
        result = _create_test_host(hdir)
    else:
        result = _create_qemu_host(name, hdir)
    if not existing:
        _write_json(hdir, HOST_FILE, dict(result, kind=kind))
    return result


def _create_test_host(hdir):
    instances = os.path.join(hdir, 'instances')
    _makedirs(instances, HOST_DIR_MODE)
    node = os.path.join(hdir, 'node.xml')
    if not os.path.exists(node):
        _write_text(node, NODE_XML % {
            'cpus': TEST_NODE_CPUS, 'memory_kib': TEST_NODE_MEMORY_MB * 1024})
    return {'uri': 'test://' + node, 'instances_path': instances}


def _check_socket_path(hdir):
    """Refuse a host directory whose daemon socket cannot fit in a Unix
    socket path. (The QEMU monitor sockets, deeper, live under the short
    :func:`.daemon.config_link` instead.)"""
    sock = os.path.join(hdir, daemon.SOCKET_RELPATH)
    if len(os.fsencode(sock)) > _MAX_SOCKET_PATH:
        raise exception.InvalidInput(
            reason='the socket path %s is longer than a Unix socket path '
                   'may be (%d bytes): use a shorter state_dir or host name'
                   % (sock, _MAX_SOCKET_PATH))


def _create_qemu_host(name, hdir):
    owner = _session_owner()
    _check_reachable(name, os.path.dirname(hdir), owner)
    for sub in ('', 'config', os.path.join('config', 'libvirt'), 'cache',
                'run', 'instances'):
        path = os.path.join(hdir, sub)
        try:
            os.mkdir(path, HOST_DIR_MODE)
            if owner is not None:
                os.lchown(path, *owner)
        except FileExistsError:
            pass
        # The host directory is the session user's: what is in it may
        # have been put there by a guest. A link is never followed.
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != (
                owner[0] if owner else os.geteuid()):
            raise exception.HypervisorUnavailable(
                host=name, reason='refused: %s is not a directory of the '
                'session user (a link, a file, or of uid %d)'
                % (path, st.st_uid))
    qemu_conf = os.path.join(hdir, 'config', 'libvirt', 'qemu.conf')
    if not os.path.exists(qemu_conf):
        _write_text(qemu_conf, QEMU_CONF, owner)
    daemon.ensure_daemon(hdir)
    return {'uri': daemon.session_uri(hdir),
            'instances_path': os.path.join(hdir, 'instances')}


def stop_local_host(name, destroy_guests=True):
    """Stop the local host ``name``: destroy its guests (unless
    ``destroy_guests`` is False: they keep running and a restarted daemon
    finds them again), stop its daemon and wait for it to exit. A test
    host has nothing running (``resize_flows.virt.reset()`` drops its
    in-process hypervisor). Safe to call repeatedly, or for no host."""
    hdir = daemon.host_dir(name)
    meta = _read_host_file(hdir)
    if meta is None or meta['kind'] != KIND_QEMU:
        return
    libvirt_host.forget(meta['uri'])
    if destroy_guests and (daemon.daemon_pid(hdir)
                           or daemon.has_guest_state(hdir)):
        daemon.ensure_daemon(hdir)
        _destroy_all_guests(name, meta['uri'])
    pid = daemon.daemon_pid(hdir)
    if pid is not None:
        daemon.terminate(pid, timeout=CONF.libvirt.daemon_start_timeout)


def remove_local_host(name):
    """Stop the local host ``name`` (destroying its guests) and remove its
    directory and its config link. Safe to call for no host."""
    stop_local_host(name)
    hdir = daemon.host_dir(name)
    daemon.remove_config_link(hdir)
    shutil.rmtree(hdir, ignore_errors=True)


def _destroy_all_guests(name, uri):
    conn = libvirt_host.open_uri(uri, name)
    gone = (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)
    try:
        for dom in conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                dom.destroy()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in gone:
                    raise
    except libvirt.libvirtError as exc:
        raise exception.HypervisorError(host=name, reason=str(exc))
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def _session_owner():
    """(uid, gid) the daemons run as when root; None when not root."""
    if os.geteuid() != 0:
        return None
    user = CONF.libvirt.session_user
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        proc = subprocess.run(
            ['useradd', '--system', '--no-create-home', '--home-dir',
             '/nonexistent', '--shell', '/usr/sbin/nologin', user],
            capture_output=True, text=True, check=False)
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise exception.HypervisorUnavailable(
                host=user, reason='cannot create session user %s: %s'
                % (user, proc.stderr.strip()))
    if entry.pw_uid == 0:
        raise exception.InvalidInput(
            reason='[libvirt]/session_user %s is root' % user)
    return entry.pw_uid, entry.pw_gid


def _check_reachable(name, path, owner):
    """The daemon's user must be able to walk down to its host directory."""
    if owner is None:
        return
    uid, gid = owner
    groups = set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    path = os.path.abspath(path)
    while True:
        if os.path.exists(path):
            st = os.stat(path)
            if st.st_uid == uid:
                ok = st.st_mode & stat.S_IXUSR
            elif st.st_gid in groups:
                ok = st.st_mode & stat.S_IXGRP
            else:
                ok = st.st_mode & stat.S_IXOTH
            if not ok:
                raise exception.HypervisorUnavailable(
                    host=name, reason='the session user (uid %d) cannot '
                    'enter %s: give it search permission (chmod o+x) or '
                    'choose a [DEFAULT]/state_dir it can reach' % (uid, path))
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def _makedirs(path, mode):
    """``os.makedirs`` where each directory made gets ``mode``."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return
    _makedirs(os.path.dirname(path), mode)
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass


def _read_host_file(hdir):
    try:
        with open(os.path.join(hdir, HOST_FILE)) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise exception.HypervisorError(
            host=os.path.basename(hdir),
            reason='unreadable %s: %s' % (HOST_FILE, exc))


def _write_json(hdir, filename, data):
    _write_text(os.path.join(hdir, filename),
                json.dumps(data, indent=2, sort_keys=True) + '\n')


def _write_text(path, text, owner=None):
    disk.write_file_atomic(path, text, owner)
