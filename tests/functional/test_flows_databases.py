"""The core flows on every database: SQLite, PostgreSQL and MariaDB.

The same small cloud as ``cloud`` (two test-driver hosts, flavors small,
big and tinydisk), but on ``any_db_url``, so the records, the allocations
and the flow log go through each backend's types, transactions and
compare-and-swap updates. Per backend: resize + confirm, migrate + revert,
a stopped server's revert, faults in a middle and in the last task of a
move, and the flow log's stored results read back as plain JSON.
"""
import json

import pytest
from taskflow.listeners import base as listener_base
from taskflow.persistence import models as tf_models
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import engine
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from tests import db_fixtures
from tests.functional.conftest import Cloud


@pytest.fixture
def cloud_db(conf, any_db_url):
    """``cloud``, once per database backend."""
    virt.reset()
    faults.clear()
    yield Cloud()
    faults.clear()
    virt.reset()


def _driver(name):
    return virt.get_driver(repository.host_get(name))


def _allocations():
    return sorted((a['consumer_uuid'], a['host'], a['vcpus'],
                   a['memory_mb'], a['disk_gb'])
                  for a in repository.allocation_list())


def test_resize_then_confirm(cloud_db):
    vm = cloud_db.server()['uuid']
    result = api.resize(cloud_db.ctx, vm, 'big', wait=True)
    mig = result['migration']
    assert result['flow_state'] == tf_states.SUCCESS
    assert mig['status'] == states.MIGRATION_FINISHED
    assert (mig['source_compute'], mig['dest_compute']) == ('host1', 'host2')
    inst = repository.instance_get(vm)
    assert (inst['vm_state'], inst['task_state'], inst['host']) == (
        states.RESIZED, None, 'host2')
    assert (inst['flavor_id'], inst['old_flavor_id']) == (
        cloud_db.big['id'], cloud_db.small['id'])
    # Until confirm, the migration holds the old flavor on the source.
    assert _allocations() == sorted([(vm, 'host2', 2, 128, 2),
                                     (mig['uuid'], 'host1', 1, 64, 1)])
    assert state.leaks() == []

    result = api.confirm_resize(cloud_db.ctx, vm, wait=True)
    assert result['flow_state'] == tf_states.SUCCESS
    assert result['migration']['status'] == states.MIGRATION_CONFIRMED
    inst = repository.instance_get(vm)
    assert (inst['vm_state'], inst['task_state'], inst['host'],
            inst['flavor_id'], inst['old_flavor_id'],
            inst['new_flavor_id']) == (
        states.ACTIVE, None, 'host2', cloud_db.big['id'], None, None)
    info = _driver('host2').get_info(vm)
    assert (info.power_state, info.vcpus, info.memory_mb) == (
        states.RUNNING, 2, 128)
    assert _driver('host2').disk_info(vm).virtual_size == 2 * 1024 ** 3
    assert not _driver('host1').instance_exists(vm)
    assert _driver('host1').list_instance_dirs() == []
    assert _allocations() == [(vm, 'host2', 2, 128, 2)]
    assert state.leaks() == []


def test_migrate_then_revert_restores_the_snapshot(cloud_db):
    vm = cloud_db.server()['uuid']
    before = state.capture()
    result = api.migrate(cloud_db.ctx, vm, wait=True)
    mig = result['migration']
    assert mig['migration_type'] == states.MIGRATION_TYPE_MIGRATION
    assert mig['old_flavor_id'] == mig['new_flavor_id'] == \
        cloud_db.small['id']
    assert repository.instance_get(vm)['host'] == 'host2'
    assert state.leaks() == []

    result = api.revert_resize(cloud_db.ctx, vm, wait=True)
    assert result['migration']['status'] == states.MIGRATION_REVERTED
    assert state.capture() == before
    assert _driver('host2').list_instance_dirs() == []
    assert state.leaks() == []


def test_stopped_server_resized_and_reverted_stays_off(cloud_db):
    vm = cloud_db.server(power_on=False)['uuid']
    before = state.capture()
    api.resize(cloud_db.ctx, vm, 'big', wait=True)
    assert _driver('host2').get_info(vm).power_state == states.SHUTDOWN
    api.revert_resize(cloud_db.ctx, vm, wait=True)
    assert state.capture() == before
    assert repository.instance_get(vm)['vm_state'] == states.STOPPED
    assert state.leaks() == []


@pytest.mark.parametrize('operation, task, point', [
    ('resize', 'CopyDisk', faults.AFTER_EXECUTE),
    ('migrate', 'FinishMigration', faults.AFTER_EXECUTE),
    ('resize', 'MarkMigrationFinished', faults.BEFORE_EXECUTE),
    ('migrate', 'MarkMigrationFinished', faults.AFTER_EXECUTE),
])
def test_fault_in_move_restores_the_snapshot(cloud_db, operation, task,
                                             point):
    vm = cloud_db.server()['uuid']
    before = state.capture()
    faults.inject(task, point)
    with pytest.raises(faults.InjectedFault):
        if operation == 'resize':
            api.resize(cloud_db.ctx, vm, 'big', wait=True)
        else:
            api.migrate(cloud_db.ctx, vm, wait=True)
    assert faults.hits(task, point) == 1
    assert state.capture() == before
    [mig] = repository.migration_list()
    assert mig['status'] == states.MIGRATION_ERROR
    assert state.leaks() == []
    handle = engine.load(mig['flow_id'])
    assert handle.engine.storage.get_flow_state() == tf_states.REVERTED


class ResultCapture(listener_base.Listener):
    """Keeps each task's result as the running engine handed it over,
    before the flow log stored it."""

    def __init__(self, engine, into):
        super().__init__(engine, task_listen_for=(tf_states.SUCCESS,))
        self._into = into

    def _task_receiver(self, state, details):
        self._into[details['task_name']] = details['result']


def _capturing(into):
    return (lambda eng: ResultCapture(eng, into),)


def _assert_stored_as_returned(flow_id, operation, returned):
    """Every atom of the stored flow succeeded, and what the log holds for
    it is plain JSON (dumps works, loads gives it back equal) and equal,
    type for type, to what the task returned."""
    handle = engine.load(flow_id)
    assert handle.operation == operation
    storage = handle.engine.storage
    assert storage.get_flow_state() == tf_states.SUCCESS
    stored = {}
    _book, detail = engine.find_detail(flow_id)
    for atom in detail:
        assert atom.state == tf_states.SUCCESS, atom.name
        if isinstance(atom, tf_models.RetryDetail):
            # A retry controller keeps its history of hosts tried; a
            # move that worked on its first host tried just that one.
            mig = repository.migration_get(handle.meta['migration_uuid'])
            assert [value for value, _failures in atom.results] == [
                mig['dest_compute']], atom.name
            json.dumps(atom.to_dict()['results'])
            continue
        assert atom.failure is None, atom.name
        text = json.dumps(atom.results)
        assert json.loads(text) == atom.results, atom.name
        assert storage.get(atom.name) == atom.results, atom.name
        stored[atom.name] = atom.results
    # The flow's store is kept as one more atom: ids only, its own too.
    store = stored.pop(storage.injector_name)
    assert sorted(store) == ['flow_id', 'instance_uuid', 'migration_uuid',
                             'request_id']
    assert store['migration_uuid'] == handle.meta['migration_uuid']
    assert store['flow_id'] == flow_id
    # == alone would let a tuple stored as a list pass: compare the JSON.
    assert {k: json.dumps(v, sort_keys=True) for k, v in stored.items()} == \
        {k: json.dumps(v, sort_keys=True) for k, v in returned.items()}
    assert stored == returned
    return stored


def test_stored_results_of_resize_and_confirm_round_trip(cloud_db):
    vm = cloud_db.server()['uuid']
    returned = {'resize': {}, 'confirm': {}}
    moved = api.resize(cloud_db.ctx, vm, 'big',
                       listeners=_capturing(returned['resize']), wait=True)
    confirmed = api.confirm_resize(cloud_db.ctx, vm,
                                   listeners=_capturing(returned['confirm']),
                                   wait=True)
    # Read back from the database, not from anything this process cached.
    db_fixtures.forget_engines()
    stored = _assert_stored_as_returned(moved['flow_id'], 'resize',
                                        returned['resize'])
    assert len(stored) == 9
    assert stored['SelectDestination'] == ['host2']
    assert stored['CopyDisk']['virtual_size'] == 1024 ** 3
    assert stored['CopyDisk']['snapshots'] == [
        'resize-%s' % moved['migration']['uuid']]
    assert len(_assert_stored_as_returned(
        confirmed['flow_id'], 'confirm_resize', returned['confirm'])) == 4


def test_stored_results_of_migrate_and_revert_round_trip(cloud_db):
    vm = cloud_db.server()['uuid']
    returned = {'migrate': {}, 'revert': {}}
    moved = api.migrate(cloud_db.ctx, vm,
                        listeners=_capturing(returned['migrate']), wait=True)
    reverted = api.revert_resize(cloud_db.ctx, vm,
                                 listeners=_capturing(returned['revert']),
                                 wait=True)
    db_fixtures.forget_engines()
    stored = _assert_stored_as_returned(moved['flow_id'], 'migrate',
                                        returned['migrate'])
    assert stored['SelectDestination'] == ['host2']
    stored = _assert_stored_as_returned(reverted['flow_id'], 'revert_resize',
                                        returned['revert'])
    assert len(stored) == 7
    assert stored['PowerOnSource'] is True
