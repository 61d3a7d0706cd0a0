"""The rsync runner's ticks: while rsync says nothing its progress callback
is still called every TICK seconds, and an error the callback raises (an
abort, a stall) kills rsync, a stopped (SIGSTOP) one too, and is raised.
A stand-in for rsync prints one progress line, then hangs."""
import os
import signal
import time

import pytest

from resize_flows import exception
from resize_flows.virt.libvirt import transfer

LINE = '      1,048,576  25%   1.00MB/s    0:00:03 (xfr#0, to-chk=0/1)\r'


class _Files:
    host = 'hostx'


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose: look at its state.
    with open('/proc/%d/stat' % pid) as handle:
        return handle.read().split(')')[-1].split()[0] != 'Z'


@pytest.mark.parametrize('stop', [False, True])
def test_a_silent_rsync_ticks_and_is_killed_by_the_callback(
        tmp_path, monkeypatch, stop):
    monkeypatch.setattr(transfer, 'TICK', 0.2)
    monkeypatch.setattr(transfer, '_STOP_GRACE', 1)
    pidfile = tmp_path / 'pid'
    argv = ['sh', '-c', 'echo $$ > %s; printf %%s "%s"; exec sleep 300'
            % (pidfile, LINE)]
    seen = []

    def progress(fraction):
        seen.append(fraction)
        if len(seen) == 2 and stop:
            os.kill(int(pidfile.read_text()), signal.SIGSTOP)
        if len(seen) >= 6:
            raise exception.CopyStalled(task='CopyDisk', seconds=1)
    start = time.monotonic()
    with pytest.raises(exception.CopyStalled):
        transfer._run_with_progress(argv, _Files(), _Files(), progress,
                                    total=4 * 1048576)
    # 0.0 at the start, the line's bytes of the total, then ticks.
    assert seen[0] == 0.0 and seen[1] == 0.25
    assert set(seen[2:]) == {0.25}
    assert time.monotonic() - start < 60
    assert not _alive(int(pidfile.read_text()))
