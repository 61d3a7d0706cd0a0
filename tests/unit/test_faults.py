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
    with pytest.raises((ValueError, ImportError), match=error):
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
             'PATH': '/usr/bin:/bin'}, timeout=60)
    assert proc.returncode == faults.CRASH_EXIT_CODE, proc.stderr
    assert proc.stdout == 'before\n'
    assert not marker.exists()          # no finally block ran


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
                           'CopyDisk:after-execute:crash'}
            with pytest.raises(ValueError):
                rf_faults.env('CopyDisk', 'sideways')
            assert callable(rf_cloud_state.leaks)
    '''))
    # A fresh pytest process: the plugin comes from the package's pytest11
    # entry point, as it does in an embedder's suite.
    result = pytester.runpytest_subprocess('-p', 'no:cacheprovider')
    result.assert_outcomes(passed=3)
