"""A flow log written by the code before issue 12's redesign carries on.

tests/fixtures/old_flowlog/ holds what the code of main@258d913 left
(make.py there made it): a resize interrupted after CopyDisk (vm-a), a
cold migration stuck on a failed undo step (vm-b), a resize finished and
not confirmed (vm-c). Each test loads it into a fresh state_dir, as a
later process of newer code would find it, and finishes one of them with
the code of today, checking the records, the test-driver hypervisors and
the disks afterwards.
"""
import json
import os
import sqlite3
import subprocess
import sys

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import flowstatus
from resize_flows import exception
from resize_flows import notifications
from resize_flows.persistence import migration
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import notifier
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import disk

FIXTURE = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'fixtures', 'old_flowlog')
PLACEHOLDER = '@STATE_DIR@'
#: Instance columns of revisions after the fixture was made, which
#: servers.json does not hold, with what its servers get: no image
#: (0008), no config drive (0009).
LATER_COLUMNS = {'image_id': None, 'config_drive': False}


def _text(relpath, state_dir):
    with open(os.path.join(FIXTURE, relpath)) as f:
        return f.read().replace(PLACEHOLDER, state_dir)


def _load(state_dir):
    """The fixture's hosts, disks and database under ``state_dir``; the
    database's URL."""
    for host in sorted(os.listdir(os.path.join(FIXTURE, 'hosts'))):
        os.makedirs(os.path.join(state_dir, 'hosts', host, 'instances'))
        for top, _dirs, files in os.walk(os.path.join(FIXTURE, 'hosts',
                                                      host)):
            rel_top = os.path.relpath(top, FIXTURE)
            os.makedirs(os.path.join(state_dir, rel_top), exist_ok=True)
            for name in files:
                rel = os.path.join(rel_top, name)
                with open(os.path.join(state_dir, rel), 'w') as f:
                    f.write(_text(rel, state_dir))
    manifest = json.loads(_text('disks.json', state_dir))
    for rel, spec in manifest.items():
        path = os.path.join(state_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        disk.create(path, spec['virtual_size'], 'fixture')
        for snapshot in spec['snapshots']:
            disk.snapshot_create(path, snapshot, 'fixture')
    path = os.path.join(state_dir, 'resize-flows.sqlite')
    db = sqlite3.connect(path)
    try:
        db.executescript(_text('flowlog.sql', state_dir))
    finally:
        db.close()
    return 'sqlite:///' + path


@pytest.fixture
def old(conf, tmp_path):
    """The fixture loaded and its database synced; its servers.json."""
    virt.reset()
    faults.clear()
    policy.reset()
    notifications.reset()
    notifier.clear()
    state_dir = conf.state_dir
    url = _load(state_dir)
    conf.set_override('connection', url, group='database')
    assert migration.db_sync(url) == migration.head()
    servers = json.loads(_text('servers.json', state_dir))
    yield servers
    api.wait_all()
    faults.clear()
    policy.reset()
    notifications.reset()
    virt.reset()
    conf.clear_override('connection', group='database')


def _own(uuid):
    """The part of state.capture() that is ``uuid``'s, as servers.json
    keeps it."""
    snap = json.loads(json.dumps(state.capture()))
    instance = {k: v for k, v in snap['instances'][uuid].items()
                if k not in LATER_COLUMNS}
    assert {k: snap['instances'][uuid][k] for k in LATER_COLUMNS} == \
        LATER_COLUMNS
    return {
        'instance': instance,
        'hosts': {
            name: {'domains': {u: d for u, d in h['domains'].items()
                               if u == uuid},
                   'dirs': {e: d for e, d in h['dirs'].items()
                            if e.split('_')[0] == uuid}}
            for name, h in snap['hosts'].items()},
    }


def _disks_check():
    """qemu-img check of every disk on every host: problems as text."""
    problems = []
    for host in repository.host_list():
        for top, _dirs, files in os.walk(host['instances_path']):
            for name in files:
                if name != 'disk':
                    continue
                proc = subprocess.run(
                    ['qemu-img', 'check', '-q', os.path.join(top, name)],
                    capture_output=True, text=True, check=False)
                if proc.returncode:
                    problems.append('%s: %s' % (os.path.join(top, name),
                                                proc.stderr.strip()))
    return problems


def _consistent(*uuids):
    """No leak of the servers ``uuids`` (of any server without them: the
    fixture's other moves are not at rest until they too are finished),
    and every disk passes qemu-img check."""
    related = set(uuids)
    for uuid in uuids:
        related |= {m['uuid'] for m in repository.migration_list(uuid)}
    assert [p for p in state.leaks()
            if not related or any(u in p for u in related)] == []
    assert _disks_check() == []


def _domain(host, uuid):
    drv = virt.get_driver(repository.host_get(host))
    if not drv.instance_exists(uuid):
        return None
    info = drv.get_info(uuid)
    return (info.power_state, info.vcpus, info.memory_mb)


def test_it_loads_consistent_and_lists_its_three_flows(old, conf, tmp_path):
    assert migration.current() == migration.head()
    # (leaks() is for a cloud at rest: vm-a's and vm-b's moves are not.)
    assert _disks_check() == []
    want = {old[name]['flow_id']: (op, old[name]['status'])
            for name, op in (('vm-a', 'resize'), ('vm-b', 'migrate'),
                             ('vm-c', 'resize'))}
    assert {f['flow_id']: (f['operation'], f['status'])
            for f in api.list_flows(api.get_admin_context())} == want
    assert {v[1] for v in want.values()} == {
        flowstatus.INTERRUPTED, flowstatus.STUCK, flowstatus.FINISHED}
    # As a later process, the command, lists them.
    conf_file = tmp_path / 'rf.conf'
    conf_file.write_text(
        '[DEFAULT]\nstate_dir = %s\n[libvirt]\nlocal_hypervisor = test\n'
        % conf.state_dir)
    cli = os.path.join(os.path.dirname(sys.executable), 'resize-flows')
    proc = subprocess.run(
        [cli, '--config-file', str(conf_file), 'flow', 'list', '-f', 'json'],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert {f['Flow']: (f['Operation'], f['Status'])
            for f in json.loads(proc.stdout)} == want


def test_resume_the_interrupted_resize(old):
    ctx = api.get_admin_context()
    uuid, flow_id = old['vm-a']['uuid'], old['vm-a']['flow_id']
    # It blocks the server meanwhile, as the old code's would.
    with pytest.raises(exception.InstanceHasUnfinishedFlow):
        api.migrate(ctx, uuid, wait=True)
    assert api.resume_flow(ctx, flow_id)['flow_state'] == tf_states.SUCCESS
    assert flowstatus.flow_brief(flow_id)['status'] == flowstatus.FINISHED
    inst = repository.instance_get(uuid)
    assert (inst['vm_state'], inst['task_state'], inst['host']) == (
        states.RESIZED, None, 'host2')
    [mig] = repository.migration_list(uuid)
    assert (mig['status'], mig['source_compute'], mig['dest_compute']) == (
        states.MIGRATION_FINISHED, 'host1', 'host2')
    assert _domain('host2', uuid) == (states.RUNNING, 2, 128)
    _consistent(uuid)
    # And it confirms as any finished resize.
    api.confirm_resize(ctx, uuid, wait=True)
    assert _domain('host1', uuid) is None
    _consistent(uuid)


def test_roll_back_the_stuck_migration(old):
    ctx = api.get_admin_context()
    uuid, flow_id = old['vm-b']['uuid'], old['vm-b']['flow_id']
    shown = flowstatus.show_flow(flow_id)
    failed = {t['name']: t for t in shown['tasks']}['PowerOffSource']
    assert failed['state'] == tf_states.REVERT_FAILURE
    assert 'HypervisorError' in failed['failure']
    with pytest.raises(exception.FlowStateConflict, match='roll the flow'):
        api.resume_flow(ctx, flow_id)
    # The operator fixed the hypervisor; the rollback finishes the undo.
    assert api.rollback_flow(ctx, flow_id)['flow_state'] == \
        tf_states.REVERTED
    assert flowstatus.flow_brief(flow_id)['status'] == flowstatus.ROLLED_BACK
    assert _own(uuid) == old['vm-b']['before']
    [mig] = repository.migration_list(uuid)
    assert mig['status'] == states.MIGRATION_ERROR
    assert _domain('host1', uuid) == (states.RUNNING, 1, 64)
    _consistent(uuid)
    # The server moves again.
    api.migrate(ctx, uuid, wait=True)
    _consistent(uuid)


def test_confirm_the_finished_resize(old):
    ctx = api.get_admin_context()
    uuid, flow_id = old['vm-c']['uuid'], old['vm-c']['flow_id']
    result = api.confirm_resize(ctx, uuid, wait=True)
    assert result['migration']['status'] == states.MIGRATION_CONFIRMED
    inst = repository.instance_get(uuid)
    assert (inst['vm_state'], inst['task_state'], inst['host']) == (
        states.ACTIVE, None, 'host2')
    assert _domain('host2', uuid) == (states.RUNNING, 2, 128)
    # The source's files and domain are gone.
    assert _domain('host1', uuid) is None
    assert _own(uuid)['hosts']['host1'] == {'domains': {}, 'dirs': {}}
    assert not os.path.exists(os.path.join(
        repository.host_get('host1')['instances_path'], uuid + '_resize'))
    assert flowstatus.flow_brief(flow_id)['status'] == flowstatus.FINISHED
    _consistent(uuid)


def test_roll_back_the_finished_resize(old):
    """The old finished flow itself can be undone, too."""
    ctx = api.get_admin_context()
    uuid, flow_id = old['vm-c']['uuid'], old['vm-c']['flow_id']
    assert api.rollback_flow(ctx, flow_id)['flow_state'] == \
        tf_states.REVERTED
    assert _own(uuid) == old['vm-c']['before']
    _consistent(uuid)


def test_all_three_in_one_process(old):
    """Resume, roll back and confirm one after the other: the cloud is
    consistent after each, and nothing is left of the old flows' moves."""
    ctx = api.get_admin_context()
    api.resume_flow(ctx, old['vm-a']['flow_id'])
    _consistent(old['vm-a']['uuid'])
    api.rollback_flow(ctx, old['vm-b']['flow_id'])
    _consistent(old['vm-a']['uuid'], old['vm-b']['uuid'])
    api.confirm_resize(ctx, old['vm-c']['uuid'], wait=True)
    _consistent()
    assert [f['status'] for f in api.list_flows(ctx, state='interrupted')] \
        == []
    assert [f['status'] for f in api.list_flows(ctx, state='stuck')] == []
    assert {name: (repository.instance_get(old[name]['uuid'])['vm_state'],
                   repository.instance_get(old[name]['uuid'])['host'])
            for name in ('vm-a', 'vm-b', 'vm-c')} == {
        'vm-a': (states.RESIZED, 'host2'), 'vm-b': (states.ACTIVE, 'host1'),
        'vm-c': (states.ACTIVE, 'host2')}
