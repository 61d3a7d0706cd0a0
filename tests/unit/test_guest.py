"""The test guest's pieces that need no QEMU: reading its console log,
its init scripts parsed by the shell that runs them (a syntax error in
/init is a kernel panic at boot), the data it writes run by that shell,
and the builds a shared build directory keeps."""
import os
import re
import subprocess
import time

import pytest

from resize_flows.testing import guest

BUSYBOX = guest.BUSYBOX

CONSOLE = '''\
SeaBIOS (version 1.16.2-debian-1.16.2-1)
[    0.000000] Linux version 6.1.0-57-cloud-amd64
RF-REPORT {"boot": 1, "cpus": 1, "mem_kb": 94780, "mac": null}\r
RF-HEARTBEAT {"boot": 1, "beat": 1}
RF-REPORT {"boot": 2, "cpus": 2, truncated
RF-REPORT not json at all
RF-REPORT [1, 2]
garbage RF-REPORTER {"boot": 9}
RF-POWER-BUTTON {"boot": 1, "press": 1, "action": "ignored"}
RF-POWER-BUTTON {"boot": 1, "press": 2, "action": "shutdown"}
RF-SHUTDOWN {"boot": 1, "reason": "acpi-power-button", "press": 2}
[    3.1] random: crng initRF-REPORT {"boot": 2, "cpus": 2, "mem_kb": 223368}
'''


def test_parse_reports_skips_garbage_and_the_last_boot_wins():
    reports = guest.parse_reports(CONSOLE)
    assert reports == [
        {'boot': 1, 'cpus': 1, 'mem_kb': 94780, 'mac': None},
        {'boot': 2, 'cpus': 2, 'mem_kb': 223368},
    ]
    assert reports[-1]['boot'] == 2


def test_parse_reports_reads_the_other_lines_by_tag():
    assert guest.parse_reports(CONSOLE, guest.SHUTDOWN) == [
        {'boot': 1, 'reason': 'acpi-power-button', 'press': 2}]
    assert [p['action'] for p in guest.parse_reports(
        CONSOLE, guest.POWER_BUTTON_PRESS)] == ['ignored', 'shutdown']
    assert guest.parse_reports(CONSOLE, guest.HEARTBEAT) == [
        {'boot': 1, 'beat': 1}]
    assert guest.parse_reports('') == []


@pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                    reason='%s is not installed' % BUSYBOX)
@pytest.mark.parametrize('script', ['INIT', 'POWER_BUTTON'])
def test_the_guest_scripts_parse(script, tmp_path):
    path = tmp_path / 'script'
    path.write_text(getattr(guest, script))
    proc = subprocess.run([BUSYBOX, 'sh', '-n', str(path)],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr) == (0, '')


@pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                    reason='%s is not installed' % BUSYBOX)
def test_a_syntax_error_is_seen(tmp_path):
    path = tmp_path / 'script'
    path.write_text(guest.INIT.replace('done', 'dnoe', 1))
    proc = subprocess.run([BUSYBOX, 'sh', '-n', str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0


def _guest_data_function():
    """The guest_data() shell function of /init, as the guest runs it."""
    found = re.search(r'^guest_data\(\) \{\n.*?^\}\n', guest.INIT,
                      re.M | re.S)
    assert found, 'no guest_data() in INIT'
    return found.group(0)


def _guest_data(disk, tmp):
    """Run guest_data on the directory ``disk`` with busybox's shell."""
    script = _guest_data_function() + 'guest_data "$1"\n'
    proc = subprocess.run([BUSYBOX, 'sh', '-c', script, 'sh', str(disk)],
                          env={'PATH': '/bin:/usr/bin', 'TMPDIR': str(tmp)},
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stderr) == (0, '')
    return disk / guest.DATA_DIR / 'guest-written'


@pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK),
                    reason='%s is not installed' % BUSYBOX)
def test_the_guest_writes_its_own_data_once(tmp_path):
    (tmp_path / 'one').mkdir()
    (tmp_path / 'two').mkdir()
    one = _guest_data(tmp_path / 'one', tmp_path)
    data = one.read_bytes()
    assert len(data) == 1024 * 1024
    first_line = data.split(b'\n')[0]
    assert re.fullmatch(rb'[0-9a-f-]{36}', first_line)
    # one uuid, repeated
    assert data == ((first_line + b'\n') * 30000)[:1024 * 1024]
    # nothing left besides the file: no temporary name, no chunk
    assert os.listdir(one.parent) == ['guest-written']
    assert os.listdir(tmp_path) == ['one', 'two']

    # a disk that has it keeps it; another guest writes other bytes
    _guest_data(tmp_path / 'one', tmp_path)
    assert one.read_bytes() == data
    two = _guest_data(tmp_path / 'two', tmp_path)
    assert two.read_bytes() != data


def test_a_shared_build_directory_keeps_the_newest_builds(tmp_path):
    for age, name in enumerate(['guest-a', 'guest-b', 'guest-c',
                                'guest-d', 'guest-e', 'guest-f']):
        (tmp_path / name).mkdir()
        then = time.time() - 1000 + age
        os.utime(tmp_path / name, (then, then))
    (tmp_path / 'debs').mkdir()
    guest._prune(str(tmp_path), keep='guest-a')
    assert sorted(os.listdir(tmp_path)) == [
        'debs', 'guest-a', 'guest-d', 'guest-e', 'guest-f']
