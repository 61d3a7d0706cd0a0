"""The fault injection mechanism: registry, config/env spec, pytest plugin."""
import subprocess
import sys
import textwrap

import pytest

from resize_flows.testing import faults


def test_armed_fault_fires_the_given_number_of_times():
    faults.clear()
    faults.inject('T', faults.AFTER_EXECUTE, times=2)
    faults.hit('T', faults.BEFORE_EXECUTE)            # another point: no
    for _ in range(2):
        with pytest.raises(faults.InjectedFault, match='T at after-exec'):
            faults.hit('T', faults.AFTER_EXECUTE)
    faults.hit('T', faults.AFTER_EXECUTE)             # spent
    assert faults.hits('T', faults.AFTER_EXECUTE) == 2
    faults.clear()


@pytest.mark.parametrize('spec, error', [
    ('CopyDisk', 'is not TASK:POINT:ACTION'),
    ('CopyDisk:sideways:crash', 'point is one of'),
    ('CopyDisk:after-execute:explode', 'point is one of'),
    ('CopyDisk:after-execute:raise:no.such.Class', 'no'),
])
def test_bad_specs_are_refused(spec, error):
    with pytest.raises(ValueError, match=error):
        faults.parse(spec)


def test_spec_with_exception_class():
    parsed = faults.parse(
        'CopyDisk:after-execute:raise:resize_flows.exception.DiskError')
    from resize_flows import exception
    assert parsed['exc_class'] is exception.DiskError


def test_crash_from_the_environment_kills_the_process_at_once(tmp_path):
    marker = tmp_path / 'finally-ran'
    code = textwrap.dedent('''
        from resize_flows import conf
        from resize_flows.testing import faults
        conf.register_opts(conf.CONF)
        conf.CONF([], project='resize-flows', default_config_files=[])
        faults.configure(conf.CONF)
        print('before', flush=True)
        try:
            faults.hit('CopyDisk', 'after-execute')
        finally:
            open(%r, 'w').close()
        print('after', flush=True)
    ''' % str(marker))
    proc = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        env={'OS_TESTING__FAULTS': 'CopyDisk:after-execute:crash',
             faults.SWITCH: '1', 'PATH': '/usr/bin:/bin'}, timeout=60)
    assert proc.returncode == faults.CRASH_EXIT_CODE, proc.stderr
    assert proc.stdout == 'before\n'
    assert not marker.exists()          # no finally block ran


_PRODUCTION_PROCESS = textwrap.dedent('''
    import logging, sys
    logging.basicConfig(stream=sys.stderr)
    from resize_flows import conf
    from resize_flows.testing import faults
    conf.register_opts(conf.CONF)
    conf.CONF([], project='resize-flows', default_config_files=[])
    print('armed', faults.configure(conf.CONF), flush=True)
    faults.hit('CopyDisk', 'after-execute')
    try:
        faults.inject('CopyDisk')
    except RuntimeError as e:
        print('inject:', e, flush=True)
    print('after', flush=True)
''')


@pytest.mark.parametrize('switch', [None, '0', 'yes'])
def test_faults_are_off_in_a_process_without_the_test_switch(switch):
    env = {'OS_TESTING__FAULTS': 'CopyDisk:after-execute:crash',
           'PATH': '/usr/bin:/bin'}
    if switch is not None:
        env[faults.SWITCH] = switch
    proc = subprocess.run(
        [sys.executable, '-c', _PRODUCTION_PROCESS], capture_output=True,
        text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == 'armed []'
    assert lines[1].startswith('inject: fault injection is off')
    assert lines[2] == 'after'
    assert 'ignored' in proc.stderr and faults.SWITCH in proc.stderr


_CALLED = []


def record_call(*args):
    """Not an exception class: a fault must never call it."""
    _CALLED.append(args)


@pytest.mark.parametrize('path', [
    'os.system', 'subprocess.call', 'tests.unit.test_faults.record_call',
    'os.path', 'tests.unit.test_faults._CALLED', 'builtins.print',
    'os', '.system', 'no_such_module_xyz.Error',
])
def test_a_fault_raises_only_an_exception_class(path):
    spec = 'CopyDisk:before-execute:raise:' + path
    with pytest.raises(ValueError):
        faults.parse(spec)
    assert _CALLED == []


def test_malformed_faults_are_skipped_and_good_ones_armed(conf, caplog):
    conf.set_override('faults', [
        'garbage', 'CopyDisk:before-execute:raise:os.system',
        'CopyDisk:after-execute:raise:builtins.KeyError'], group='testing')
    try:
        faults.clear()
        assert faults.configure(conf) == [
            'CopyDisk:after-execute:raise:builtins.KeyError']
        faults.hit('CopyDisk', faults.BEFORE_EXECUTE)      # not armed
        with pytest.raises(KeyError):
            faults.hit('CopyDisk', faults.AFTER_EXECUTE)
        errors = [r.getMessage() for r in caplog.records
                  if r.levelname == 'ERROR']
        assert len(errors) == 2
        assert 'garbage' in errors[0] and 'os.system' in errors[1]
    finally:
        faults.clear()
        conf.clear_override('faults', group='testing')


def test_the_pytest_plugin_serves_an_embedders_suite(pytester):
    pytester.makepyfile(textwrap.dedent('''
        import pytest
        from resize_flows.testing import faults

        def test_inject(rf_faults):
            rf_faults.inject('SomeTask')
            with pytest.raises(rf_faults.InjectedFault):
                faults.hit('SomeTask', 'before-execute')
            assert rf_faults.hits('SomeTask') == 1
            rf_faults.inject('SomeTask', 'after-revert', times=None)

        def test_faults_do_not_leak_between_tests():
            faults.hit('SomeTask', 'after-revert')

        def test_env_for_a_subprocess(rf_faults, rf_cloud_state):
            env = rf_faults.env('CopyDisk', 'after-execute', base={})
            assert env == {'OS_TESTING__FAULTS':
                           'CopyDisk:after-execute:crash',
                           faults.SWITCH: '1'}
            with pytest.raises(ValueError):
                rf_faults.env('CopyDisk', 'sideways')
            assert callable(rf_cloud_state.leaks)
    '''))
    # A fresh pytest process: the plugin comes from the package's pytest11
    # entry point, as it does in an embedder's suite.
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider')
    result.assert_outcomes(passed=3)
