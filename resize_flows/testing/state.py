"""What the cloud looks like, in one comparable value.

:func:`capture` reads the records, every host's hypervisor and every
host's instances directory and image cache (``_base``) into plain data,
so a test can take it before an operation and compare it after (a failed
operation must leave it equal), and :func:`leaks` lists what nothing
refers to. An unused cached base is not a leak: it is a cache
(``image cache clean`` removes it). The enabled plugins
(``[DEFAULT]/plugins``) count too: their records in :func:`capture`
(``Plugin.state()``), their findings in :func:`leaks`
(``Plugin.audit()``). One that is not installed is skipped and named:
``{'not installed': why}`` in place of its state, a ``not audited``
line in the leaks.
"""
import posixpath

from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows import plugins as rf_plugins
from resize_flows import states
from resize_flows import virt
from resize_flows.virt.libvirt import layout

# Fields that change without meaning anything for the state of the cloud.
_VOLATILE = ('id', 'created_at', 'updated_at')


def _strip(record):
    return {k: v for k, v in record.items() if k not in _VOLATILE}


def _files(drv, entry):
    """{name: facts} of every file of the instance directory ``entry``:
    for a disk its virtual size, snapshots and backing file (a name in
    ``_base``, or the path when it is elsewhere); for the console log
    nothing (the guest appends to it); for any other file its size."""
    folder = posixpath.join(drv.files.instances_path, entry)
    cache = posixpath.join(drv.files.instances_path, layout.BASE_DIR)
    out = {}
    for name, found in sorted(drv.files.scan(folder).items()):
        if found.kind != 'file':
            out[name] = {'kind': found.kind}
        elif name in layout.VIRTIO_DISKS:
            info = drv.files.disk_info(posixpath.join(folder, name)) or {}
            backing = (info.get('full-backing-filename')
                       or info.get('backing-filename'))
            if backing and posixpath.dirname(backing) == cache:
                backing = posixpath.basename(backing)
            out[name] = {
                'virtual_size': info.get('virtual-size'),
                'snapshots': sorted(sn['name'] for sn in
                                    info.get('snapshots', ())),
                'backing': backing}
        elif name == layout.CONSOLE_LOG:
            out[name] = {}
        else:
            out[name] = {'size': found.size}
    return out


def _plugins():
    """``(loaded, missing)``: the enabled plugins that load, in order,
    and ``{name: why}`` of those that are not installed (or do not
    load): skipped, and named in the result, so that a test of a missing
    plugin can still compare the cloud."""
    loaded, missing = [], {}
    for name in rf_plugins.enabled():
        try:
            loaded.extend(rf_plugins.load([name]))
        except exception.PluginNotInstalled as exc:
            missing[name] = str(exc)
    return loaded, missing


def capture(caches=True):
    """{'instances', 'allocations', 'hosts', 'plugins'}: records, each
    enabled plugin's own (``{name: plugin.state()}``), and per host its
    domains (power state, vcpus, memory), its instance directories
    (``dirs``: the root disk's virtual size and snapshots; ``files``:
    every file, see :func:`_files`) and its image cache (``base``: name
    and size of each file of ``_base``). With ``caches`` False there is
    no ``base``: to compare a cloud before and after an operation that
    may leave a base it fetched in a cache, as a rolled-back move does
    (a cache, not a leak)."""
    instances = {i['uuid']: _strip(i) for i in repository.instance_list()}
    allocations = sorted(
        (a['consumer_uuid'], a['consumer_type'], a['host'], a['vcpus'],
         a['memory_mb'], a['disk_gb'])
        for a in repository.allocation_list())
    hosts = {}
    for host in repository.host_list():
        drv = virt.get_driver(host)
        domains = {}
        for uuid in sorted(drv.list_instance_uuids()):
            info = drv.get_info(uuid)
            domains[uuid] = (info.power_state, info.vcpus, info.memory_mb)
        dirs, files = {}, {}
        for entry in sorted(drv.list_instance_dirs()):
            if entry == layout.BASE_DIR:
                continue
            uuid, _, suffix = entry.partition('_')
            disk = drv.disk_info(uuid, '_' + suffix if suffix else '')
            dirs[entry] = None if disk is None else {
                'virtual_size': disk.virtual_size,
                'snapshots': sorted(disk.snapshots)}
            files[entry] = _files(drv, entry)
        hosts[host['name']] = {'domains': domains, 'dirs': dirs,
                               'files': files}
        if caches:
            hosts[host['name']]['base'] = {
                name: found.size for name, found in drv.files.scan(
                    posixpath.join(drv.files.instances_path,
                                   layout.BASE_DIR)).items()}
    loaded, missing = _plugins()
    found = {p.name: p.state() for p in loaded}
    found.update((name, {'not installed': why})
                 for name, why in missing.items())
    return {'instances': instances, 'allocations': allocations,
            'hosts': hosts, 'plugins': found}


def leaks():
    """Inconsistencies between records, hypervisors and disks, as sentences.

    Empty when: every instance has exactly one domain, on the host its
    record names, in the power state its record names; allocations are
    exactly what instances and unfinished migrations imply; no directory,
    domain or snapshot belongs to nothing; and no enabled plugin's
    ``audit()`` finds anything (each finding prefixed ``plugin NAME:``).
    """
    problems = []
    snap = capture()
    migrations = {m['uuid']: m for m in repository.migration_list()}
    open_moves = {m['instance_uuid']: m for m in migrations.values()
                  if m['status'] not in states.MIGRATION_TERMINAL}
    for uuid, inst in snap['instances'].items():
        where = [h for h, s in snap['hosts'].items() if uuid in s['domains']]
        move = open_moves.get(uuid)
        allowed = {inst['host']}
        if move is not None:
            allowed |= {move['source_compute'], move['dest_compute']}
        if inst['host'] not in where:
            problems.append('instance %s has no domain on its host %s' % (
                uuid, inst['host']))
        if not set(where) <= allowed:
            problems.append('instance %s has domains on %s' % (uuid, where))
        if move is None and len(where) > 1:
            problems.append('instance %s is on two hosts: %s' % (uuid, where))
        dom = snap['hosts'][inst['host']]['domains'].get(uuid)
        if dom is not None and move is None and dom[0] != inst['power_state']:
            problems.append('instance %s: power state %s in the records, %s '
                            'on the host' % (uuid, inst['power_state'],
                                             dom[0]))
    for uuid, move in open_moves.items():
        if move['status'] != states.MIGRATION_FINISHED:
            continue
        # A move awaiting confirm or revert keeps the source's copy and the
        # snapshot that a revert rolls back to.
        stash = snap['hosts'][move['source_compute']]['dirs'].get(
            uuid + '_resize')
        if not stash:
            problems.append('finished move of %s has no %s_resize with a '
                            'disk on %s' % (uuid, uuid,
                                            move['source_compute']))
        elif 'resize-%s' % move['uuid'] not in stash['snapshots']:
            problems.append('finished move of %s: the source disk lacks '
                            'its resize snapshot' % uuid)
        if not snap['hosts'][move['dest_compute']]['dirs'].get(uuid):
            problems.append('finished move of %s has no disk on %s' % (
                uuid, move['dest_compute']))
    known = set(snap['instances'])
    for host, hs in snap['hosts'].items():
        for uuid in hs['domains']:
            if uuid not in known:
                problems.append('domain %s on %s belongs to no instance' % (
                    uuid, host))
        for entry, disk in hs['dirs'].items():
            uuid = entry.split('_')[0]
            if uuid not in known:
                problems.append('directory %s on %s belongs to no '
                                'instance' % (entry, host))
                continue
            if entry != uuid and uuid not in open_moves:
                problems.append('directory %s on %s outlived its move' % (
                    entry, host))
            if disk and disk['snapshots'] and uuid not in open_moves:
                problems.append('disk of %s on %s keeps snapshots %s' % (
                    entry, host, disk['snapshots']))
            problems.extend(_file_problems(
                host, hs, entry, keep_snapshots=uuid in open_moves))
    held = {}
    for consumer, ctype, host, vcpus, mem, disk in snap['allocations']:
        held.setdefault(consumer, []).append((host, vcpus, mem, disk))
    flavors = {f['id']: f for f in repository.flavor_list()}
    for uuid, inst in snap['instances'].items():
        f = repository.flavor_resources(flavors[inst['flavor_id']])
        want = [(inst['host'], f['vcpus'], f['memory_mb'], f['disk_gb'])]
        if held.pop(uuid, []) != want:
            problems.append('allocations of instance %s are not %s' % (
                uuid, want))
    for mig_uuid, mig in migrations.items():
        got = held.pop(mig_uuid, [])
        if mig['status'] in states.MIGRATION_TERMINAL:
            want = []
        else:
            f = repository.flavor_resources(flavors[mig['old_flavor_id']])
            want = [(mig['source_compute'], f['vcpus'], f['memory_mb'],
                     f['disk_gb'])]
        if got != want:
            problems.append('allocations of %s migration %s are %s, not '
                            '%s' % (mig['status'], mig_uuid, got, want))
    for consumer, got in held.items():
        if consumer not in migrations:
            problems.append('allocations of unknown consumer %s: %s' % (
                consumer, got))
    loaded, missing = _plugins()
    for plugin in loaded:
        problems.extend('plugin %s: %s' % (plugin.name, finding)
                        for finding in plugin.audit())
    problems.extend('plugin %s: not audited: %s' % (name, why)
                    for name, why in sorted(missing.items()))
    return problems


def _file_problems(host, hs, entry, keep_snapshots):
    """A disk of ``entry`` whose backing file is not in the host's image
    cache; the ephemeral disk's snapshots outside a move (the root
    disk's are told above)."""
    problems = []
    for name, facts in sorted(hs['files'].get(entry, {}).items()):
        backing = facts.get('backing')
        if backing and '/' not in backing and backing not in hs['base']:
            problems.append('disk %s of %s on %s has no backing file: '
                            '%s/%s is missing' % (name, entry, host,
                                                  layout.BASE_DIR, backing))
        if (name == layout.EPHEMERAL and facts.get('snapshots')
                and not keep_snapshots):
            problems.append('%s of %s on %s keeps snapshots %s' % (
                name, entry, host, facts['snapshots']))
    return problems
