"""server migration abort from the command line: an interrupted move
cancelled, and bad input one line with nothing changed."""
import json

import pytest

from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from tests.functional.test_cli import assert_one_line_error
from tests.functional.test_cli import rf  # noqa: F401 (a fixture)


def test_abort_of_an_interrupted_move(rf):
    before = state.capture(caches=False)
    faults.inject('CopyDisk', faults.BEFORE_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    try:
        with pytest.raises(faults.SimulatedCrash):
            rf('server', 'resize', 'vm1', '--flavor', 'small', '-q')
    finally:
        faults.clear()
    code, out, err = rf('server', 'migration', 'abort', 'vm1', '-f', 'json')
    assert code == 0, err
    shown = json.loads(out)
    assert shown['status'] == states.MIGRATION_CANCELLED
    assert state.capture(caches=False) == before
    [mig] = repository.migration_list()
    assert (mig['status'], mig['flow_id']) == (states.MIGRATION_CANCELLED,
                                               shown['flow_id'])
    code, out, err = rf('server', 'event', 'list', 'vm1', '-f', 'json')
    events = [row['Event'] for row in json.loads(out)]
    assert 'abort_interrupted' in events


@pytest.mark.parametrize('argv, message', [
    (('server', 'migration', 'abort', 'nope'),
     'Instance nope could not be found'),
    (('server', 'migration', 'abort', 'vm1'), 'it has no move'),
    (('server', 'migration', 'abort', 'vm1', '--wait', '--timeout', '-1'),
     'timeout'),
    (('--os-roles', 'member', 'server', 'migration', 'abort', 'vm1'),
     "Policy doesn't allow os_compute_api:servers:migrations:delete"),
])
def test_bad_input_is_one_line_and_changes_nothing(rf, argv, message):
    assert_one_line_error(rf, argv, message)


def test_a_finished_move_is_not_aborted(rf):
    code, _out, err = rf('server', 'resize', 'vm1', '--flavor', 'small',
                         '-q')
    assert code == 0, err
    line = assert_one_line_error(rf, ('server', 'migration', 'abort', 'vm1'),
                                 'has finished: confirm or revert it '
                                 'instead')
    assert line.startswith('Cannot abort the move of server ')
