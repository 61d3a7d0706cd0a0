"""Audit and repair: the records against the hypervisors and the disks.

:func:`host_state` reads one host (its domains, instance directories,
their files and its image cache ``_base``) into plain data;
:func:`findings` compares every host's (or one's) with the records and
lists what does not match, as rows (:func:`finding`): ``kind``, ``host``,
``object``, ``detail`` (a sentence) and ``fix`` (the command that would
fix it, or ``audit --repair`` for the safe classes). The kinds:

- ``host``: a host that does not answer (the audit goes on without it;
  nothing is said of what is on it);
- ``domain``: a domain that no record names, an instance without its
  domain or with domains on other hosts;
- ``power state``: a guest in another power state than recorded (safe);
- ``allocation``: allocations that do not match the instances and the
  open migrations (safe: heal_allocations);
- ``directory``, ``disk``: instance directories, disks and snapshots
  that nothing refers to, or a move's that are missing; the ``_resize``
  and ``_revert`` directories of moves that ended are safe to remove;
- ``flow``: unfinished flows that nobody holds (interrupted or stuck);
- ``plugin NAME``: what an enabled plugin's ``audit()`` finds.

:func:`repair` fixes the safe classes and marks them ``repaired``; it
never deletes a disk that a record refers to, touches nothing on a host
that does not answer, and leaves alone an instance with a task under way.
``testing.state.leaks()`` is :func:`findings` without hosts and flows,
so tests and operators share this one definition.
"""
import logging
import posixpath

from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import repairs
from resize_flows.persistence import repository
from resize_flows import plugins as rf_plugins
from resize_flows import states
from resize_flows import virt
from resize_flows.virt.libvirt import layout

LOG = logging.getLogger(__name__)

HOST = 'host'
DOMAIN = 'domain'
POWER = 'power state'
ALLOCATION = 'allocation'
DIRECTORY = 'directory'
DISK = 'disk'
FLOW = 'flow'
PLUGIN = 'plugin'
#: What :func:`repair` may fix.
SAFE = (POWER, ALLOCATION, DIRECTORY)
REPAIRED = 'repaired'
REPAIR = 'resize-flows audit --repair'
NO_FIX = 'none automatic: look at the host and the records'
#: The suffixes of the directories a move leaves, safe to remove once it
#: ended and the instance's own directory is in place.
ENDED_MOVE_SUFFIXES = ('_resize', '_revert')


def finding(kind, host, obj, detail, fix=NO_FIX, repair=None):
    """One row; ``repair`` (not shown) says how :func:`repair` fixes it."""
    return {'kind': kind, 'host': host, 'object': obj, 'detail': detail,
            'fix': fix, '_repair': repair}


def public(rows):
    """The rows without what only :func:`repair` reads."""
    return [{k: v for k, v in r.items() if not k.startswith('_')}
            for r in rows]


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


def host_state(host, caches=True):
    """One host as plain data: ``domains`` {uuid: (power state, vcpus,
    memory)}, ``dirs`` {entry: the root disk's virtual size and
    snapshots, or None}, ``files`` {entry: :func:`_files`} and, with
    ``caches``, ``base`` {name: size} of its image cache."""
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
    out = {'domains': domains, 'dirs': dirs, 'files': files}
    if caches:
        out['base'] = {
            name: found.size for name, found in drv.files.scan(
                posixpath.join(drv.files.instances_path,
                               layout.BASE_DIR)).items()}
    return out


def enabled_plugins():
    """``(loaded, missing)``: the enabled plugins that load, in order
    (none when the option is unset), and ``{name: why}`` of those that
    are not installed (or do not load): skipped, and named (so that a
    test of a missing plugin can still compare the cloud)."""
    loaded, missing = [], {}
    for name in rf_plugins.enabled():
        try:
            loaded.extend(rf_plugins.load([name]))
        except exception.PluginNotInstalled as exc:
            missing[name] = str(exc)
    return loaded, missing


def _read_hosts(host, rows, strict=False):
    """{name: host_state} of the hosts that answered; a ``host`` finding
    in ``rows`` for each that did not (``strict``: its error raised)."""
    seen = {}
    for rec in repository.host_list():
        if host is not None and rec['name'] != host:
            continue
        try:
            seen[rec['name']] = host_state(rec)
        except Exception as e:
            if strict:
                raise
            LOG.warning('audit: host %s does not answer: %s',
                        rec['name'], e)
            rows.append(finding(
                HOST, rec['name'], rec['name'],
                'host %s does not answer: %s' % (
                    rec['name'], str(e).splitlines()[0] if str(e)
                    else type(e).__name__),
                'bring the host back (or flow abandon the moves it '
                'holds up)'))
    return seen


def findings(host=None, hosts=True, flows=True):
    """What does not match, as rows (see the module's docstring): of
    every host, or only of ``host``. Without ``hosts`` a host that does
    not answer is not a row: its error is raised (as the tests want);
    without ``flows`` no unfinished flow is listed."""
    rows = []
    seen = _read_hosts(host, rows, strict=not hosts)
    instances = {i['uuid']: i for i in repository.instance_list()}
    migrations = {m['uuid']: m for m in repository.migration_list()}
    open_moves = {m['instance_uuid']: m for m in migrations.values()
                  if m['status'] not in states.MIGRATION_TERMINAL}
    _instance_rows(rows, seen, instances, open_moves)
    _finished_move_rows(rows, seen, open_moves)
    for name, hs in seen.items():
        _host_rows(rows, name, hs, instances, open_moves)
    _allocation_rows(rows, host, instances, migrations)
    if flows:
        _flow_rows(rows, host, instances, migrations)
    if host is None:
        loaded, missing = enabled_plugins()
        for plugin in loaded:
            try:
                found = list(plugin.audit())
            except Exception as e:
                found = ['its audit failed: %s' % e]
            rows.extend(finding(PLUGIN + ' ' + plugin.name, None, None,
                                'plugin %s: %s' % (plugin.name, text))
                        for text in found)
        rows.extend(finding(PLUGIN + ' ' + name, None, None,
                            'plugin %s: not audited: %s' % (name, why))
                    for name, why in sorted(missing.items()))
    return rows


def _instance_rows(rows, seen, instances, open_moves):
    for uuid, inst in instances.items():
        where = [h for h, s in seen.items() if uuid in s['domains']]
        move = open_moves.get(uuid)
        allowed = {inst['host']}
        if move is not None:
            allowed |= {move['source_compute'], move['dest_compute']}
        if inst['host'] in seen and inst['host'] not in where:
            rows.append(finding(
                DOMAIN, inst['host'], uuid,
                'instance %s has no domain on its host %s' % (
                    uuid, inst['host'])))
        if not set(where) <= allowed:
            rows.append(finding(
                DOMAIN, ','.join(sorted(set(where) - allowed)), uuid,
                'instance %s has domains on %s' % (uuid, where)))
        if move is None and len(where) > 1:
            rows.append(finding(
                DOMAIN, ','.join(where), uuid,
                'instance %s is on two hosts: %s' % (uuid, where)))
        dom = seen.get(inst['host'], {}).get('domains', {}).get(uuid)
        if dom is not None and move is None and \
                dom[0] != inst['power_state']:
            rows.append(finding(
                POWER, inst['host'], uuid,
                'instance %s: power state %s in the records, %s on the '
                'host' % (uuid, inst['power_state'], dom[0]),
                REPAIR, repair=('power', uuid, inst['power_state'],
                                dom[0], inst['host'])))


def _finished_move_rows(rows, seen, open_moves):
    for uuid, move in open_moves.items():
        if move['status'] != states.MIGRATION_FINISHED:
            continue
        # A move awaiting confirm or revert keeps the source's copy and the
        # snapshot that a revert rolls back to.
        source = move['source_compute']
        if source in seen:
            stash = seen[source]['dirs'].get(uuid + '_resize')
            if not stash:
                rows.append(finding(
                    DIRECTORY, source, uuid + '_resize',
                    'finished move of %s has no %s_resize with a disk on '
                    '%s' % (uuid, uuid, source)))
            elif 'resize-%s' % move['uuid'] not in stash['snapshots']:
                rows.append(finding(
                    DISK, source, uuid + '_resize',
                    'finished move of %s: the source disk lacks its '
                    'resize snapshot' % uuid))
        dest = move['dest_compute']
        if dest in seen and not seen[dest]['dirs'].get(uuid):
            rows.append(finding(
                DIRECTORY, dest, uuid,
                'finished move of %s has no disk on %s' % (uuid, dest)))


def _host_rows(rows, host, hs, instances, open_moves):
    for uuid in hs['domains']:
        if uuid not in instances:
            rows.append(finding(
                DOMAIN, host, uuid,
                'domain %s on %s belongs to no instance' % (uuid, host),
                'virsh undefine %s on %s, once nobody needs it' % (
                    uuid, host)))
    for entry, disk in hs['dirs'].items():
        uuid, _, suffix = entry.partition('_')
        suffix = '_' + suffix if suffix else ''
        if uuid not in instances:
            rows.append(finding(
                DIRECTORY, host, entry,
                'directory %s on %s belongs to no instance' % (entry, host),
                'remove it by hand once nobody needs its disks'))
            continue
        inst, move = instances[uuid], open_moves.get(uuid)
        if suffix and move is None:
            safe = (suffix in ENDED_MOVE_SUFFIXES and uuid in instances
                    and inst['task_state'] is None)
            rows.append(finding(
                DIRECTORY, host, entry,
                'directory %s on %s outlived its move' % (entry, host),
                REPAIR if safe else NO_FIX,
                repair=('dir', uuid, suffix, host) if safe else None))
        allowed = {inst['host']}
        if move is not None:
            allowed |= {move['source_compute'], move['dest_compute']}
        if not suffix and host not in allowed:
            rows.append(finding(
                DIRECTORY, host, entry,
                'directory %s on %s is not on its instance\'s host %s' % (
                    entry, host, inst['host'])))
        if disk and disk['snapshots'] and move is None:
            rows.append(finding(
                DISK, host, entry,
                'disk of %s on %s keeps snapshots %s' % (
                    entry, host, disk['snapshots']),
                'qemu-img snapshot -d NAME on the disk'))
        rows.extend(_file_rows(host, hs, entry,
                               keep_snapshots=move is not None))


def _file_rows(host, hs, entry, keep_snapshots):
    """A disk of ``entry`` whose backing file is not in the host's image
    cache; the ephemeral disk's snapshots outside a move (the root
    disk's are told above)."""
    rows = []
    for name, facts in sorted(hs['files'].get(entry, {}).items()):
        backing = facts.get('backing')
        if backing and '/' not in backing and backing not in hs['base']:
            rows.append(finding(
                DISK, host, '%s/%s' % (entry, name),
                'disk %s of %s on %s has no backing file: %s/%s is '
                'missing' % (name, entry, host, layout.BASE_DIR, backing)))
        if (name == layout.EPHEMERAL and facts.get('snapshots')
                and not keep_snapshots):
            rows.append(finding(
                DISK, host, '%s/%s' % (entry, name),
                '%s of %s on %s keeps snapshots %s' % (
                    name, entry, host, facts['snapshots']),
                'qemu-img snapshot -d NAME on the disk'))
    return rows


def _allocation_rows(rows, host, instances, migrations):
    held = {}
    for a in repository.allocation_list():
        held.setdefault(a['consumer_uuid'], []).append(
            (a['host'], a['vcpus'], a['memory_mb'], a['disk_gb']))
    flavors = {f['id']: f for f in repository.flavor_list()}

    def check(consumer, ctype, got, want, detail, instance_uuid):
        if got == want:
            return
        involved = sorted({g[0] for g in got} | {w[0] for w in want})
        if host is not None and host not in involved:
            return
        rows.append(finding(
            ALLOCATION, ','.join(involved), consumer, detail, REPAIR,
            repair=('alloc', consumer, ctype, want, instance_uuid,
                    involved)))

    for uuid, inst in instances.items():
        f = repository.flavor_resources(flavors[inst['flavor_id']])
        want = [(inst['host'], f['vcpus'], f['memory_mb'], f['disk_gb'])]
        got = held.pop(uuid, [])
        check(uuid, repository.CONSUMER_INSTANCE, got, want,
              'allocations of instance %s are not %s' % (uuid, want), uuid)
    for mig_uuid, mig in migrations.items():
        got = held.pop(mig_uuid, [])
        if mig['status'] in states.MIGRATION_TERMINAL:
            want = []
        else:
            f = repository.flavor_resources(flavors[mig['old_flavor_id']])
            want = [(mig['source_compute'], f['vcpus'], f['memory_mb'],
                     f['disk_gb'])]
        check(mig_uuid, repository.CONSUMER_MIGRATION, got, want,
              'allocations of %s migration %s are %s, not %s' % (
                  mig['status'], mig_uuid, got, want), mig['instance_uuid'])
    for consumer, got in held.items():
        check(consumer, None, got, [],
              'allocations of unknown consumer %s: %s' % (consumer, got),
              None)


def _flow_rows(rows, host, instances, migrations):
    for status in (flowstatus.INTERRUPTED, flowstatus.STUCK):
        for flow in flowstatus.list_flows(status=status):
            inst = instances.get(flow['instance_uuid']) or {}
            mig = migrations.get(flow['migration_uuid']) or {}
            where = sorted({h for h in (inst.get('host'),
                                        mig.get('source_compute'),
                                        mig.get('dest_compute')) if h})
            if host is not None and host not in where:
                continue
            fid = flow['flow_id']
            rows.append(finding(
                FLOW, ','.join(where), fid,
                '%s %s flow of instance %s: nobody holds it' % (
                    status, flow['operation'], flow['instance_uuid']),
                'resize-flows flow resume %s (or flow rollback %s; when '
                'neither can finish: flow abandon %s --reason TEXT)' % (
                    fid, fid, fid) if status == flowstatus.INTERRUPTED
                else 'resize-flows flow rollback %s once the cause is '
                     'fixed (or flow abandon %s --reason TEXT)' % (fid, fid)))


def answers(host, cache):
    """Whether a host's hypervisor answers now (asked once per repair)."""
    if host not in cache:
        try:
            virt.get_driver(repository.host_get(host)).list_instance_uuids()
            cache[host] = True
        except Exception:
            cache[host] = False
    return cache[host]


def _busy(instance_uuid):
    """Whether an operation is under way on the instance (its allocations
    and power state are then the operation's to change)."""
    try:
        inst = repository.instance_get(instance_uuid)
    except Exception:
        return False
    if inst['task_state'] is not None:
        return True
    return any(m['status'] not in (states.MIGRATION_FINISHED,)
               for m in repository.migration_list(instance_uuid,
                                                  open_only=True))


def repair(rows, request_id, user_id=None, project_id=None):
    """Fix the safe rows in place (``fix`` becomes ``repaired``); each
    repair that concerns an instance is recorded as its instance action
    ``audit_repair``. Returns the rows."""
    cache = {}
    who = {'request_id': request_id, 'user_id': user_id,
           'project_id': project_id}
    for row in rows:
        how = row.get('_repair')
        if how is None:
            continue
        try:
            done = _repair_one(how, cache, who)
        except Exception as e:
            LOG.warning('audit: could not repair %s: %s', row['detail'], e)
            done = False
        if done:
            row['fix'] = REPAIRED
    return rows


def _repair_one(how, cache, who):
    kind = how[0]
    if kind == 'power':
        _kind, uuid, recorded, actual, host = how
        return not _busy(uuid) and repairs.set_power_state(
            uuid, actual, recorded, host, **who)
    if kind == 'alloc':
        _kind, consumer, ctype, want, instance_uuid, involved = how
        if instance_uuid is not None and _busy(instance_uuid):
            return False
        if not all(answers(h, cache) for h in involved):
            return False
        if ctype is None:
            ctype = repository.CONSUMER_INSTANCE
            instance_uuid = None
        elif ctype == repository.CONSUMER_MIGRATION and instance_uuid:
            try:
                repository.instance_get(instance_uuid)
            except Exception:
                instance_uuid = None
        repairs.set_allocations(consumer, ctype, want, instance_uuid, **who)
        return True
    if kind == 'dir':
        _kind, uuid, suffix, host = how
        inst = repository.instance_get(uuid)
        if _busy(uuid) or not answers(host, cache):
            return False
        # Never the instance's only disk: its own directory must be in
        # place with its disk on its host.
        own = virt.get_driver(repository.host_get(inst['host']))
        if own.disk_info(uuid, '') is None:
            return False
        virt.get_driver(repository.host_get(host)).remove_instance_dir(
            uuid, suffix)
        repairs.record_repair(uuid, 'remove_directory', host,
                              'removed %s%s on %s: its move had ended' % (
                                  uuid, suffix, host), **who)
        return True
    return False
