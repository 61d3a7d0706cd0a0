"""What the resize-flows command lets through from its environment and
tells its caller: fault injection's test switch, secrets, tenants."""
import json

import pytest

from resize_flows.persistence import repository
from resize_flows.testing import faults
from tests.functional.test_cli import rf  # noqa: F401 (a fixture)
from tests.unit import test_faults


def _no_switch(monkeypatch):
    """This process as a production one: fault injection not switched on."""
    monkeypatch.setattr(faults, '_ENABLED', False)
    monkeypatch.delenv(faults.SWITCH, raising=False)


# -- item 15: fault injection --------------------------------------------------

def test_production_command_ignores_faults_in_its_environment(
        rf, monkeypatch):
    _no_switch(monkeypatch)
    monkeypatch.setenv('OS_TESTING__FAULTS', 'CopyDisk:before-execute:raise')
    code, out, err = rf('server', 'resize', 'vm1', '--flavor', 'small', '-q',
                        '-f', 'json')
    assert code == 0, err
    assert json.loads(out)['status'] == 'finished'
    assert 'ignored' in err and faults.SWITCH in err


@pytest.mark.parametrize('spec', [
    'garbage', 'CopyDisk:sideways:raise', 'CopyDisk:before-execute:raise:',
    'CopyDisk:before-execute:raise:no.such.Error',
])
def test_malformed_fault_breaks_no_command(rf, monkeypatch, spec):
    monkeypatch.setenv(faults.SWITCH, '1')
    monkeypatch.setenv('OS_TESTING__FAULTS', spec)
    code, out, err = rf('host', 'list', '-f', 'json')
    assert code == 0, err
    assert {h['Name'] for h in json.loads(out)} == {'host1', 'host2'}
    assert 'fault not armed' in err
    code, out, err = rf('server', 'resize', 'vm1', '--flavor', 'small', '-q')
    assert code == 0, err


def test_a_fault_never_calls_a_function(rf, monkeypatch):
    monkeypatch.setenv(faults.SWITCH, '1')
    monkeypatch.setenv(
        'OS_TESTING__FAULTS',
        'CopyDisk:before-execute:raise:tests.unit.test_faults.record_call')
    code, out, err = rf('server', 'resize', 'vm1', '--flavor', 'small', '-q')
    assert code == 0, err
    assert test_faults._CALLED == []
    assert 'is not an exception class' in err
    [inst] = repository.instance_list()
    assert inst['host'] == 'host2'
