"""Input hygiene of the resize-flows command: quiet moves, names, numbers,
options and broken databases give one line and change nothing."""
import pytest

from resize_flows import exception
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows.virt.libvirt import local
from tests.functional.test_cli import assert_one_line_error
from tests.functional.test_cli import records_and_cloud
from tests.functional.test_cli import rf  # noqa: F401  (the fixture)


@pytest.mark.parametrize('argv', [
    ('server', 'resize', 'vm1', '--flavor', 'small', '-q'),
    ('server', 'resize', 'vm1', '--flavor', 'small', '--quiet'),
    ('-q', 'server', 'migrate', 'vm1'),
    ('server', 'migrate', '--quiet', 'vm1'),
])
def test_quiet_moves_print_no_tasks(rf, argv):  # noqa: F811
    code, out, err = rf(*argv)
    assert code == 0, err
    assert err == ''
    assert 'finished' in out


HOST = ('--vcpus', '1', '--memory-mb', '1', '--disk-gb', '1')
FLAVOR = ('--vcpus', '1', '--ram', '64', '--disk', '1')
BAD_NAMES = ['a\nb', 'vm\x1b[31m', 'nul\x00', 'x' * 256, '', ' ']


@pytest.mark.parametrize('name', BAD_NAMES)
@pytest.mark.parametrize('kind', ['server', 'flavor', 'host'])
def test_bad_names_are_refused_with_one_line(rf, tmp_path, kind, name):  # noqa: F811,E501
    argv = {'server': ('server', 'create', name, '--flavor', 'tiny',
                       '--host', 'host1'),
            'flavor': ('flavor', 'create', name) + FLAVOR,
            'host': ('host', 'create', name) + HOST}[kind]
    hosts = sorted(p.name for p in (tmp_path / 'cli-state' / 'hosts')
                   .iterdir())
    line = assert_one_line_error(rf, argv, 'Invalid input: ')
    # Shown escaped: no raw control character reaches the terminal.
    assert line.isprintable()
    assert '%s name' % kind in line
    assert sorted(p.name for p in (tmp_path / 'cli-state' / 'hosts')
                  .iterdir()) == hosts


@pytest.mark.parametrize('name', ['cn 3', 'cn@4', '_cn', 'cn/5'])
def test_host_names_are_checked_alike_local_or_by_uri(rf, tmp_path, name):  # noqa: F811,E501
    for extra in ((), ('--uri', 'test:///default', '--instances-path',
                       str(tmp_path))):
        assert_one_line_error(rf, ('host', 'create', name) + HOST + extra,
                              'use letters, digits')


def test_a_host_recorded_by_uri_under_any_name_can_be_deleted(rf, tmp_path):  # noqa: F811,E501
    # Recorded before names were checked at creation.
    node = tmp_path / 'node.xml'
    node.write_text(local.NODE_XML % {'cpus': 1, 'memory_kib': 1024})
    repository.host_create('cn 3', 'test://%s' % node, str(tmp_path), 1, 1,
                           1)
    code, out, err = rf('host', 'delete', 'cn 3')
    assert code == 0, err
    assert 'cn 3' not in [h['name'] for h in repository.host_list()]


HUGE = str(2 ** 64)


@pytest.mark.parametrize('argv', [
    ('host', 'create', 'big', '--vcpus', HUGE, '--memory-mb', '1',
     '--disk-gb', '1'),
    ('host', 'create', 'big', '--vcpus', '1', '--memory-mb', '1',
     '--disk-gb', HUGE),
    ('flavor', 'create', 'big', '--vcpus', '1', '--ram', HUGE, '--disk',
     '1'),
    ('flavor', 'create', 'big', '--vcpus', '1', '--ram', '1', '--disk',
     str(2 ** 63)),
])
def test_numbers_beyond_64_bits_are_refused(rf, tmp_path, argv):  # noqa: F811,E501
    assert_one_line_error(rf, argv, 'must be at most %d' % (2 ** 63 - 1))
    assert not (tmp_path / 'cli-state' / 'hosts' / 'big').exists()


@pytest.mark.parametrize('section, line, option', [
    ('scheduler', 'max_attempts = abc', '[scheduler]/max_attempts'),
    ('scheduler', 'max_attempts = 0', '[scheduler]/max_attempts'),
    ('flows', 'lease_seconds = soon', '[flows]/lease_seconds'),
    ('libvirt', 'local_hypervisor = xen', '[libvirt]/local_hypervisor'),
])
def test_invalid_options_are_refused_before_anything_runs(
        rf, tmp_path, section, line, option):  # noqa: F811
    before = records_and_cloud()
    flows_before = flowstatus.list_flows()
    bad = tmp_path / 'bad.conf'
    bad.write_text('[%s]\n%s\n' % (section, line))
    for argv in (('server', 'resize', 'vm1', '--flavor', 'small'),
                 ('server', 'list')):
        code, out, err = rf('--config-file', str(bad), *argv)
        assert code != 0
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith('Invalid configuration: %s: ' % option)
        assert records_and_cloud() == before
        assert flowstatus.list_flows() == flows_before


def test_an_embedder_with_an_invalid_option_stores_no_flow(
        rf, conf, tmp_path):  # noqa: F811
    from resize_flows import api
    bad = tmp_path / 'bad.conf'
    bad.write_text('[scheduler]\nmax_attempts = abc\n')
    conf(['--config-file', str(tmp_path / 'rf.conf'), '--config-file',
          str(bad)], project='resize-flows', default_config_files=[],
         default_config_dirs=[])
    before = records_and_cloud()
    with pytest.raises(exception.InvalidConfiguration,
                       match=r'\[scheduler\]/max_attempts'):
        api.resize(api.get_admin_context(), 'vm1', 'small', wait=True)
    assert records_and_cloud() == before
    assert flowstatus.list_flows() == []


@pytest.mark.parametrize('argv, message', [
    (('flow', 'list', '--limit', HUGE), '--limit must be at most'),
    (('confirm-expired', '--window', HUGE), 'window must be a number of '
     'seconds from 0 to'),
])
def test_huge_numbers_of_other_commands_are_one_line(rf, argv, message):  # noqa: F811,E501
    line = assert_one_line_error(rf, argv, message)
    assert 'Python int' not in line
