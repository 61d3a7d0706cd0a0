"""What the resize-flows command lets through from its environment and
tells its caller: fault injection's test switch, secrets, tenants."""
import json

import pytest

from resize_flows.persistence import repository
from resize_flows.testing import state
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


# -- item 10: the jobboard's password -----------------------------------------

SECRET = 's3cr%40t-pw'          # in the URL, quoted; decoded: s3cr@t-pw
SECRET_URL = 'redis://:%s@127.0.0.1:1/0?password=q-s3cret' % SECRET


def _leaked(text):
    return [s for s in (SECRET, 's3cr@t-pw', 'q-s3cret') if s in text]


@pytest.fixture
def secret_board(rf, tmp_path):
    """A config file enabling a jobboard at an unreachable Redis URL with
    a password."""
    path = tmp_path / 'board.conf'
    path.write_text('[jobboard]\nenabled = true\nbackend_url = %s\n'
                    % SECRET_URL)
    yield str(path)
    from resize_flows import jobboard
    jobboard.reset()


def test_the_jobboards_password_is_masked_everywhere(rf, secret_board,
                                                     caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    # A member's resize, refused (the board cannot be reached).
    code, out, err = rf('--config-file', secret_board, '--os-project-id',
                        'admin', '--os-roles', 'member', 'server', 'resize',
                        'vm1', '--flavor', 'small')
    assert code != 0 and err.strip()
    assert _leaked(out + err) == []
    # An admin's: the masked URL says which board.
    code, out, err = rf('--config-file', secret_board, 'server', 'resize',
                        'vm1', '--flavor', 'small')
    assert code != 0 and 'redis://:***@127.0.0.1:1/0?password=***' in err
    assert _leaked(out + err) == []
    # A conductor's start-up line and its failure.
    code, out, err = rf('--config-file', secret_board, 'conductor',
                        '--max-jobs', '1')
    assert code != 0
    assert 'claiming jobs on resize-flows (redis://:***@127.0.0.1:1' in err
    assert _leaked(out + err) == []
    assert _leaked('\n'.join(r.getMessage() for r in caplog.records)) == []
    assert _leaked(caplog.text) == []
    [inst] = repository.instance_list()
    assert (inst['host'], inst['task_state']) == ('host1', None)


def test_the_backend_url_is_a_secret_option(conf):
    import logging
    opt = conf._get_opt_info('backend_url', 'jobboard')['opt']
    assert opt.secret
    conf.set_override('backend_url', SECRET_URL, group='jobboard')
    try:
        lines = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(record.getMessage())
        log = logging.getLogger('test-opt-values')
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
        conf.log_opt_values(log, logging.DEBUG)
        log.removeHandler(handler)
    finally:
        conf.clear_override('backend_url', group='jobboard')
    assert any('backend_url' in line for line in lines)
    assert _leaked('\n'.join(lines)) == []


@pytest.mark.parametrize('url, masked', [
    ('redis://:pw@h:1', 'redis://:***@h:1'),
    ('redis://user:pw@h:1/2', 'redis://user:***@h:1/2'),
    ('redis://pw@h', 'redis://***@h'),
    ('rediss://h:1?ssl=true&password=pw', 'rediss://h:1?ssl=true&password=***'),
    ('redis://127.0.0.1:6379', 'redis://127.0.0.1:6379'),
])
def test_mask_url(url, masked):
    from resize_flows import jobboard
    assert jobboard.mask_url(url) == masked
    text = jobboard.mask_text('at %s: pw refused' % url, url)
    assert ('pw' in text) == ('pw' not in url)


# -- item 11: what a tenant is told ---------------------------------------------

MEMBER = ('--os-project-id', 'admin', '--os-roles', 'member')


def test_a_member_is_told_no_host_names(rf, tmp_path):
    before = state.capture()
    assert rf('flavor', 'create', 'huge', '--vcpus', '64', '--ram',
              '999999', '--disk', '999')[0] == 0
    log_file = tmp_path / 'rf.log'
    code, out, err = rf('--log-file', str(log_file), *MEMBER, 'server',
                        'resize', 'vm1', '--flavor', 'huge')
    assert (code, out, err) == (1, '', 'No valid host was found.\n')
    # The details are in the log file.
    assert 'host2 lacks' in log_file.read_text()
    for host in ('host1', 'host2', 'host9'):
        code, out, err = rf(*MEMBER, 'server', 'create', 'vm2', '--flavor',
                            'tiny', '--host', host)
        assert (code, out) == (1, '')
        assert err == ("Policy doesn't allow os_compute_api:servers:create:"
                       "forced_host to be performed.\n")
    # The admin is told which host lacks what.
    code, out, err = rf('server', 'resize', 'vm1', '--flavor', 'huge')
    assert code == 1 and 'host2 lacks' in err
    assert state.capture() == before
    code, out, err = rf(*MEMBER, 'server', 'create', 'vm2', '--flavor',
                        'tiny', '-f', 'json')
    assert code == 0, err
    assert json.loads(out)['project_id'] == 'admin'


def test_server_show_tells_a_member_no_hypervisor_error(rf):
    from resize_flows import virt
    [inst] = repository.instance_list()
    virt.get_driver(repository.host_get('host1')).destroy(
        inst['uuid'], destroy_disks=False)
    code, out, err = rf(*MEMBER, 'server', 'show', 'vm1', '-f', 'json')
    assert code == 0, err
    assert json.loads(out)['hypervisor'] == 'unknown'
    code, out, err = rf('server', 'show', 'vm1', '-f', 'json')
    assert 'host1' in json.loads(out)['hypervisor']
