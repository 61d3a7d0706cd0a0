"""The resize-flows command, run in this process on test-driver hosts."""
import datetime
import json

import pytest

from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows.testing import state
from resize_flows import virt
from tests.functional import cli_helpers as cli


@pytest.fixture
def rf(conf, tmp_path):
    """Run the CLI with a config file naming a fresh state dir; returns
    (exit code, stdout, stderr)."""
    yield cli.make_cli(conf, tmp_path,
                       flavors=(cli.TINY, ('small', 2, 96, 2)))
    virt.reset()


def _show(rf, *argv):
    return cli.show(rf, *argv)


def test_resize_confirm_migrate_revert(rf):
    moved = _show(rf, 'server', 'resize', 'vm1', '--flavor', 'small', '-q')
    assert (moved['status'], moved['dest']) == ('finished', 'host2')
    server = _show(rf, 'server', 'show', 'vm1')
    assert (server['vm_state'], server['host'], server['flavor']) == (
        'resized', 'host2', 'small')
    assert _show(rf, 'server', 'resize', 'confirm', 'vm1',
                 '-q')['status'] == 'confirmed'
    assert _show(rf, 'server', 'show', 'vm1')['hypervisor'] == \
        'Running, 2 vCPU, 96 MB'
    assert _show(rf, 'server', 'migrate', 'vm1', '-q')['dest'] == 'host1'
    assert _show(rf, 'server', 'resize', 'revert', 'vm1',
                 '-q')['status'] == 'reverted'
    server = _show(rf, 'server', 'show', 'vm1')
    assert (server['vm_state'], server['host']) == ('active', 'host2')
    migrations = _show(rf, 'server', 'migration', 'list')
    assert [m['Status'] for m in migrations] == ['confirmed', 'reverted']
    events = _show(rf, 'server', 'event', 'list', 'vm1')
    assert [e['Action'] for e in events if e['Action']] == [
        'revertResize', 'migrate', 'confirmResize', 'resize']
    assert state.leaks() == []


def test_progress_is_printed_per_task(rf):
    code, out, err = rf('server', 'resize', 'vm1', '--flavor', 'small')
    assert code == 0
    lines = [line.split()[:2] for line in err.splitlines()]
    # The copy of the instance directory may print where it is, by bytes.
    progress = [line for line in lines if line[1].endswith('%')]
    assert {task for task, _percent in progress} <= {'CopyDisk'}
    assert [line for line in lines if line not in progress] == [
        [task, 'SUCCESS'] for task in (
            'BeginMigration', 'SelectDestination', 'ClaimResources',
            'PrepareDestination', 'PowerOffSource', 'MoveSourceToResize',
            'CopyDisk', 'FinishMigration', 'MarkMigrationFinished')]


@pytest.mark.parametrize('argv, message', [
    (('server', 'resize', 'vm1', '--flavor', 'nope'),
     'Flavor nope could not be found.'),
    (('server', 'resize', 'nope', '--flavor', 'small'),
     'Instance nope could not be found.'),
    (('server', 'resize', 'vm1', '--flavor', 'tiny'),
     'When resizing, instances must change flavor.'),
    (('server', 'migrate', 'vm1', '--host', 'host1'),
     'to the host it is on'),
    (('server', 'migrate', 'vm1', '--host', 'host9'),
     'Compute host host9 could not be found.'),
    (('server', 'resize', 'confirm', 'vm1'),
     "Cannot 'confirm_resize' instance"),
    (('server', 'resize', 'revert', 'vm1'),
     "Cannot 'revert_resize' instance"),
    (('host', 'create', 'host1', '--vcpus', '1', '--memory-mb', '1',
      '--disk-gb', '1'), 'Host host1 already exists.'),
    (('flavor', 'create', 'neg', '--vcpus', '-1', '--ram', '64', '--disk',
      '1'), 'vcpus must be a whole number >= 0'),
    (('server', 'create', 'vm2', '--flavor', 'small', '--host', 'host9'),
     'Compute host host9 could not be found.'),
    # A member of another project does not see vm1 at all.
    (('--os-project-id', 'other', '--os-roles', 'member', 'server',
      'resize', 'vm1', '--flavor', 'small'),
     'Instance vm1 could not be found.'),
    # A member of vm1's project may resize it but not migrate it.
    (('--os-roles', 'member', 'server', 'migrate', 'vm1'),
     "Policy doesn't allow os_compute_api:os-migrate-server:migrate"),
    (('--os-roles', 'member', 'flow', 'rollback', 'nope'),
     "Policy doesn't allow resize_flows:flows:rollback"),
    # The jobboard's conductors and jobs are an operator's: admin.
    (('--os-roles', 'member', 'conductor', 'list'),
     "Policy doesn't allow resize_flows:conductors:list"),
    (('--os-roles', 'member', 'job', 'list'),
     "Policy doesn't allow resize_flows:jobs:list"),
    (('confirm-expired', '--window', '-1'), '--window must be >= 0'),
    (('conductor', '--simultaneous-jobs', '0'),
     '--simultaneous-jobs must be >= 1'),
    (('host', 'create', 'far', '--vcpus', '1', '--memory-mb', '1',
      '--disk-gb', '1', '--uri', 'test:///default', '--instances-path',
      '/srv/instances', '--ssh', 'root@'), 'is not an ssh address'),
    (('host', 'create', 'far', '--vcpus', '1', '--memory-mb', '1',
      '--disk-gb', '1', '--ssh', 'root@far'), '--ssh needs --uri'),
    # Nothing listens on port 1: the machine does not answer.
    (('host', 'create', 'far', '--vcpus', '1', '--memory-mb', '1',
      '--disk-gb', '1', '--uri', 'test:///default', '--instances-path',
      '/srv/instances', '--ssh', 'root@127.0.0.1:1'), 'ssh root@127.0.0.1:1'),
])
def test_bad_input_is_one_line_and_changes_nothing(rf, argv, message):
    assert_one_line_error(rf, argv, message)


def records_and_cloud():
    """What a refused command must leave as it was."""
    return (state.capture(), repository.host_list(),
            repository.flavor_list(), repository.instance_list(),
            repository.migration_list())


def assert_one_line_error(rf, argv, message):
    """``resize-flows ARGV`` fails with one line holding ``message``, no
    traceback, and changes nothing: records, hypervisors, disks."""
    return cli.one_line_error(rf, argv, message, records_and_cloud)


def test_argument_errors_exit_non_zero(rf, capsys):
    with pytest.raises(SystemExit) as e:
        rf('host', 'create', 'h', '--vcpus', 'many', '--memory-mb', '1',
           '--disk-gb', '1')
    assert e.value.code == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err


def test_help_lists_the_commands(rf, capsys):
    code, out, err = rf('help')
    assert code == 0
    text = out + capsys.readouterr().out
    for name in ('server resize confirm', 'server resize revert',
                 'server migrate', 'server migration list',
                 'server event list', 'db sync', 'db version',
                 'host create', 'flavor create'):
        assert name in text


def test_flow_commands(rf, tmp_path):
    code, out, err = rf('server', 'resize', 'vm1', '--flavor', 'small',
                        '-q', '-f', 'json')
    flow_id = json.loads(out)['flow']
    flows = _show(rf, 'flow', 'list')
    assert [(f['Flow'], f['Operation'], f['Status']) for f in flows] == [
        (flow_id, 'resize', 'finished')]
    shown = _show(rf, 'flow', 'show', flow_id)
    assert shown['status'] == 'finished'
    assert [t['name'] for t in shown['tasks']][0] == 'BeginMigration'
    assert {t['state'] for t in shown['tasks']} == {'SUCCESS'}
    code, out, err = rf('flow', 'show', flow_id)
    assert code == 0 and 'CopyDisk' in out and 'SUCCESS' in out
    assert _show(rf, 'flow', 'list', '--state', 'interrupted') == []
    rolled = _show(rf, 'flow', 'rollback', flow_id, '-q')
    assert rolled['status'] == 'rolled back'
    assert _show(rf, 'server', 'show', 'vm1')['host'] == 'host1'


@pytest.mark.parametrize('argv, message', [
    (('flow', 'resume', 'no-such-flow'), 'Flow no-such-flow could not be'),
    (('flow', 'rollback', 'no-such-flow'), 'Flow no-such-flow could not'),
    (('flow', 'show', 'no-such-flow'), 'Flow no-such-flow could not be'),
    (('flow', 'list', '--operation', 'explode'), "unknown operation"),
    (('flow', 'list', '--state', 'sleeping'), "unknown flow state"),
    (('flow', 'list', '--limit', '-1'), "--limit must be 0 or more"),
    (('flow', 'list', '--marker', 'nope'), "Marker nope could not be"),
    (('flow', 'purge', '--before', 'last tuesday'), "not an ISO 8601 date"),
])
def test_flow_bad_input(rf, argv, message):
    before = (state.capture(), flowstatus.list_flows())
    code, out, err = rf(*argv)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert (state.capture(), flowstatus.list_flows()) == before


def test_flow_list_pages_and_purge(rf):
    for move in (('resize', 'vm1', '--flavor', 'small'),
                 ('migrate', 'vm1'), ('migrate', 'vm1')):
        code, _out, err = rf('server', *move, '-q')
        assert code == 0, err
        assert rf('server', 'resize', 'confirm', 'vm1')[0] == 0
    everything = [f['Flow'] for f in _show(rf, 'flow', 'list')]
    assert len(everything) == 6
    code, out, err = rf('flow', 'list', '--limit', '4', '-f', 'json')
    first = [f['Flow'] for f in json.loads(out)]
    assert err.strip() == ('More flows match: --marker %s for the next page'
                           % first[-1])
    code, out, err = rf('flow', 'list', '--limit', '4', '--marker',
                        first[-1], '-f', 'json')
    assert (code, err) == (0, '')
    assert first + [f['Flow'] for f in json.loads(out)] == everything
    assert _show(rf, 'flow', 'purge', '--before', '2000-01-01') == {
        'before': '2000-01-01T00:00:00', 'purged': 0, 'dry_run': False}
    tomorrow = (datetime.datetime.utcnow() +
                datetime.timedelta(days=1)).date().isoformat()
    assert _show(rf, 'flow', 'purge', '--before', tomorrow,
                 '--dry-run')['purged'] == 6
    assert len(_show(rf, 'flow', 'list')) == 6
    assert _show(rf, 'flow', 'purge', '--before', tomorrow)['purged'] == 6
    assert _show(rf, 'flow', 'list') == []


def test_resume_of_a_finished_flow_is_refused(rf):
    code, out, err = rf('server', 'resize', 'vm1', '--flavor', 'small',
                        '-q', '-f', 'json')
    flow_id = json.loads(out)['flow']
    before = (state.capture(), flowstatus.show_flow(flow_id))
    code, out, err = rf('flow', 'resume', flow_id)
    assert code == 1
    assert err.strip() == ('Cannot resume flow %s: it has finished' %
                           flow_id)
    assert (state.capture(), flowstatus.show_flow(flow_id)) == before


def test_resume_interrupted_on_start_when_configured(rf, tmp_path):
    from resize_flows import api
    from resize_flows.testing import faults
    faults.inject('CopyDisk', faults.AFTER_EXECUTE,
                  exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.resize(api.get_admin_context(), 'vm1', 'small', wait=True)
    faults.clear()
    # Off by default: the move is refused, naming the unfinished flow.
    code, out, err = rf('server', 'resize', 'confirm', 'vm1', '-q')
    assert code == 1 and 'is unfinished (interrupted)' in err
    extra = tmp_path / 'resume.conf'
    extra.write_text('[flows]\nresume_interrupted = true\n')
    code, out, err = rf('--config-file', str(extra), 'server', 'resize',
                        'confirm', 'vm1', '-q', '-f', 'json')
    assert code == 0, err
    assert 'resumed interrupted flow' in err
    assert json.loads(out)['status'] == 'confirmed'
    assert state.leaks() == []


def test_host_with_an_unreachable_hypervisor_is_not_recorded(rf, tmp_path):
    before = repository.host_list()
    code, out, err = rf('host', 'create', 'far', '--vcpus', '1',
                        '--memory-mb', '64', '--disk-gb', '1', '--uri',
                        'qemu+unix:///session?socket=%s/none' % tmp_path,
                        '--instances-path', str(tmp_path))
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert repository.host_list() == before


def test_identity_options_and_environment(rf, monkeypatch):
    # A member of vm1's project (admin, as the CLI created it) resizes it.
    moved = _show(rf, '--os-user-id', 'u1', '--os-roles', 'member',
                  'server', 'resize', 'vm1', '--flavor', 'small', '-q')
    assert moved['status'] == 'finished'
    # The environment says who asks when the options do not.
    monkeypatch.setenv('OS_PROJECT_ID', 'other')
    monkeypatch.setenv('OS_ROLES', 'member')
    code, out, err = rf('server', 'list', '-f', 'json')
    assert code == 0, err
    assert json.loads(out) == []
    code, out, err = rf('server', 'resize', 'confirm', 'vm1')
    assert code != 0 and 'could not be found' in err
    monkeypatch.delenv('OS_PROJECT_ID')
    monkeypatch.delenv('OS_ROLES')
    confirmed = _show(rf, 'server', 'resize', 'confirm', 'vm1', '-q')
    assert confirmed['status'] == 'confirmed'


def test_no_wait_prints_the_ids_at_once(rf):
    started = _show(rf, 'server', 'migrate', 'vm1', '--no-wait')
    # Printed when the operation started; the command returned once the
    # flow, run in its process, had ended.
    assert started['status'] == 'pre-migrating'
    assert started['flow_state'] == 'RUNNING'
    assert started['request_id'].startswith('req-')
    [mig] = repository.migration_list()
    assert (mig['uuid'], mig['flow_id']) == (started['migration'],
                                             started['flow'])
    assert mig['status'] == 'finished'
    assert flowstatus.flow_brief(started['flow'])['status'] == \
        flowstatus.FINISHED


def test_confirm_expired_for_cron(rf, tmp_path):
    _show(rf, 'server', 'resize', 'vm1', '--flavor', 'small', '-q')
    code, out, err = rf('confirm-expired', '-f', 'json')
    assert code == 0, err
    assert json.loads(out) == []            # window 0: off
    code, out, err = rf('confirm-expired', '--window', '3600', '-f', 'json')
    assert json.loads(out) == []            # not that old
    _backdate_migrations(seconds=120)
    extra = tmp_path / 'window.conf'
    extra.write_text('[compute]\nresize_confirm_window = 60\n')
    code, out, err = rf('--config-file', str(extra), 'confirm-expired',
                        '-f', 'json')
    assert code == 0, err
    [row] = json.loads(out)
    assert row['Result'] == 'confirmed'
    assert repository.migration_list()[0]['status'] == 'confirmed'
    assert state.leaks() == []


def _backdate_migrations(seconds):
    import datetime

    import sqlalchemy as sa

    from resize_flows.persistence import db
    from resize_flows.persistence import models
    then = models.utcnow() - datetime.timedelta(seconds=seconds)
    with db.session_scope() as s:
        s.execute(sa.update(models.Migration).values(updated_at=then))
