"""The test guest's pieces that need no QEMU: reading its console log,
and its init scripts parsed by the shell that runs them (a syntax error
in /init is a kernel panic at boot)."""
import os
import subprocess

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
RF-SHUTDOWN {"boot": 1, "reason": "acpi-power-button"}
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
        {'boot': 1, 'reason': 'acpi-power-button'}]
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
