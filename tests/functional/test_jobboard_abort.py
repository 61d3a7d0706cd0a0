"""server migration abort with the jobboard on: a queued move is cancelled
(its job leaves the board), and the conductor that holds a running move
stops it at its next safe point (the conductors are threads, as in
test_jobboard.py)."""
import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import jobboard
from resize_flows.persistence import flowindex
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state
from tests.functional.test_abort import _copy_disk
from tests.functional.test_abort import _server_with_data
from tests.functional.test_abort import _wait_for
from tests.functional.test_abort import slow_copy  # noqa: F401 (fixture)
from tests.functional.test_jobboard import conductors  # noqa: F401
from tests.redis_fixtures import jobboard_conf  # noqa: F401 (a fixture)


def test_abort_of_a_queued_move_cancels_it(cloud, jobboard_conf):
    server = cloud.server()
    before = state.capture(caches=False)
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    assert flowstatus.flow_brief(op.flow_id)['status'] == flowstatus.QUEUED
    out = api.abort_migration(cloud.ctx, server['uuid'])
    assert out['status'] == states.MIGRATION_CANCELLED
    assert flowstatus.flow_brief(op.flow_id)['status'] == \
        flowstatus.ROLLED_BACK
    assert state.capture(caches=False) == before
    assert jobboard.list_jobs() == []
    assert flowindex.lease_list() == {}
    assert repository.migration_list(server['uuid'])[-1]['status'] == \
        states.MIGRATION_CANCELLED
    # Nothing left to abort now.
    with pytest.raises(exception.MigrationNotAbortable):
        api.abort_migration(cloud.ctx, server['uuid'])


def test_the_conductor_that_holds_the_move_stops_it(cloud, conductors,
                                                    slow_copy):
    server = _server_with_data(cloud)
    before = state.capture(caches=False)
    ca = conductors('ca')
    op = api.resize(cloud.ctx, server['uuid'], 'big')
    _wait_for(lambda: (flowstatus.flow_brief(op.flow_id)['status'] ==
                       flowstatus.RUNNING and
                       (_copy_disk(op.flow_id)['progress'] or 0) > 0),
              'the conductor to copy')
    out = api.abort_migration(cloud.ctx, server['uuid'], wait=True,
                              timeout=120)
    assert out['status'] == states.MIGRATION_CANCELLED
    _wait_for(lambda: any(flow_id == op.flow_id
                          for flow_id, _ in ca.conductor.outcomes),
              'the conductor to end the job')
    assert (op.flow_id, tf_states.REVERTED) in ca.conductor.outcomes
    assert _copy_disk(op.flow_id)['state'] == tf_states.REVERTED
    assert 'FlowAborted' in (
        flowstatus.show_flow(op.flow_id)['tasks'][-1]['failure'] or
        _copy_disk(op.flow_id)['failure'] or '')
    assert state.capture(caches=False) == before
    assert state.leaks() == []
