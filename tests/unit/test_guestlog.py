"""Reading the test guest's console log across boots and moves: the
running boot's report is the latest after the last shutdown."""
import subprocess
import sys

from resize_flows.testing import guestlog

R1 = ('RF-REPORT {"boot": 1, "cpus": 1, "mem_kb": 94780, '
      '"disks": {"vda": 1073741824, "vdb": 1073741824, "vdc": 16777216}, '
      '"files": {"vda": {"hello.txt": "5891b5c4aa"}, '
      '"vdb": {"guest-written": "0a1b2c3d4e"}}, "swap": {"vdc": 16380}, '
      '"config_drive": {"label": "config-2", "uuid": "6d1e"}, '
      '"serials": {"vdd": "vol-1"}, '
      '"macs": {"eth0": "fa:16:3e:00:00:01", "eth1": "fa:16:3e:00:00:02"}, '
      '"mac": "fa:16:3e:00:00:01"}')
S1 = ('RF-SHUTDOWN {"boot": 1, "reason": "acpi-power-button", '
      '"press": 1}')
R2 = R1.replace('"boot": 1', '"boot": 2').replace('"cpus": 1', '"cpus": 2')


def test_the_running_boots_report_comes_after_the_last_shutdown():
    assert guestlog.current_report('') is None
    assert guestlog.current_report(R1)['boot'] == 1
    # shut down for a move: no current report until it boots again
    log = '\n'.join([R1, 'RF-HEARTBEAT {"boot": 1, "beat": 1}', S1])
    assert guestlog.current_report(log) is None
    assert guestlog.last_shutdown(log) == {
        'boot': 1, 'reason': 'acpi-power-button', 'press': 1}
    log += '\nSeaBIOS\n[ 0.1] random: crng init' + R2 + '\n'
    assert guestlog.current_report(log)['cpus'] == 2
    # a hard stop leaves no shutdown line: the latest report counts
    assert guestlog.current_report(R1 + '\n' + R2)['boot'] == 2
    assert guestlog.last_shutdown(R1) is None


def test_one_readable_line():
    line = guestlog.report_line(guestlog.current_report(R1))
    assert line == (
        'boot 1: 1 vCPU, 92.56 MiB RAM; disks vda 1 GiB, vdb 1 GiB, '
        'vdc 16 MiB; swap vdc 16 MiB; data vda/hello.txt 5891b5c4, '
        'vdb/guest-written 0a1b2c3d; MAC fa:16:3e:00:00:01; '
        'config drive 6d1e; serials vdd vol-1; '
        'NICs eth0 fa:16:3e:00:00:01, eth1 fa:16:3e:00:00:02')
    # a report of a guest built before serials and macs
    older = {k: v for k, v in guestlog.current_report(R1).items()
             if k not in ('serials', 'macs')}
    assert guestlog.report_line(older).endswith(
        'config drive 6d1e; serials none; NICs none')
    assert guestlog.shutdown_line(guestlog.last_shutdown(S1)) == (
        'boot 1 shut itself down: acpi-power-button (press 1)')


def _cli(what, text):
    return subprocess.run(
        [sys.executable, '-m', 'resize_flows.testing.guestlog', what],
        input=text, capture_output=True, text=True, check=False)


def test_the_command_waits_with_exit_3_until_there_is_a_line():
    proc = _cli('report', R1 + '\n' + S1 + '\n')
    assert (proc.returncode, proc.stdout) == (guestlog.NOTHING_YET, '')
    assert proc.stderr == 'no report yet\n'
    proc = _cli('shutdown', R1 + '\n' + S1 + '\n')
    assert proc.returncode == 0
    assert proc.stdout.startswith('boot 1 shut itself down')
    proc = _cli('report', R1 + '\n' + S1 + '\n' + R2 + '\n')
    assert (proc.returncode, proc.stdout[:16]) == (0, 'boot 2: 2 vCPU, ')
