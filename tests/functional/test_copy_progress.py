"""CopyDisk's progress on the test driver: it reaches the flow log while the
copy runs, a crash half way through is resumed without copying the disk
again, and the CLI's listener draws it.

The source disk gets a few MiB of data (qemu-io) and the copy small chunks,
so that it reports progress several times.
"""
import io
import subprocess

import pytest
from taskflow import states as tf_states

from resize_flows import api
from resize_flows.cmd import common
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import sparsecopy

KiB = 1024
# (offset MiB, pattern) of the 1 MiB writes into the source disk.
WRITES = [(i * 37 % 1000, 0xa0 + i) for i in range(12)]


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK', 256 * KiB)
    monkeypatch.setattr(sparsecopy, 'COPY_CHUNK_MIN', 256 * KiB)


@pytest.fixture
def copies(monkeypatch):
    """Each call of sparse_copy as {'stats', 'seen'}: its CopyStats and,
    per progress report, (fraction, CopyDisk's progress in the flow log
    right after it). ``copies.crash_at`` makes a report at or past that
    fraction raise SimulatedCrash (the process dies there)."""
    calls = []
    real = sparsecopy.sparse_copy

    def spy(src, dst, host, owner=None, progress=None, **kwargs):
        call = {'stats': sparsecopy.CopyStats(), 'seen': []}
        # The root disk's copies (a move copies every file of the
        # instance directory, the disk first).
        if dst.endswith('/disk'):
            calls.append(call)

        def reporting(fraction):
            progress(fraction)
            flow_id = flowstatus.list_flows()[0]['flow_id']
            call['seen'].append((fraction, _copy_disk(flow_id)['progress']))
            if spy.crash_at is not None and fraction >= spy.crash_at:
                spy.crash_at = None
                raise faults.SimulatedCrash('crash while copying')
        return real(src, dst, host, owner, progress=reporting,
                    stats=call['stats'], **kwargs)

    spy.crash_at = None
    spy.calls = calls
    monkeypatch.setattr(sparsecopy, 'sparse_copy', spy)
    return spy


def _copy_disk(flow_id):
    tasks = flowstatus.show_flow(flow_id)['tasks']
    return next(t for t in tasks if t['name'] == 'CopyDisk')


def _server_with_data(cloud):
    vm = cloud.server()
    path = virt.get_driver(repository.host_get('host1')).disk_info(
        vm['uuid']).path
    commands = []
    for offset, pattern in WRITES:
        commands += ['-c', 'write -P 0x%02x %dM 1M' % (pattern, offset)]
    subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                   check=True, capture_output=True)
    return vm


def _has_the_data(host, uuid):
    path = virt.get_driver(repository.host_get(host)).disk_info(uuid).path
    commands = []
    for offset, pattern in WRITES:
        commands += ['-c', 'read -P 0x%02x %dM 1M' % (pattern, offset)]
    proc = subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                          capture_output=True, text=True)
    return proc.returncode == 0 and 'failed' not in proc.stdout


def test_copy_progress_reaches_the_flow_log(cloud, small_chunks, copies):
    vm = _server_with_data(cloud)
    result = api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    copy_disk = _copy_disk(result['flow_id'])
    assert copy_disk['state'] == tf_states.SUCCESS
    assert copy_disk['progress'] == 1.0
    [call] = copies.calls
    fractions = [fraction for fraction, _logged in call['seen']]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len([f for f in fractions if 0 < f < 1]) >= 10
    # each report is in the flow log as soon as it is made (the disk is
    # nearly all the bytes of the step)
    assert all(abs(logged - fraction) < 0.01
               for fraction, logged in call['seen'])
    assert _has_the_data('host2', vm['uuid'])
    assert state.leaks() == []


def test_crash_half_way_through_the_copy_is_resumed(cloud, small_chunks,
                                                    copies):
    vm = _server_with_data(cloud)
    copies.crash_at = 0.5
    with pytest.raises(faults.SimulatedCrash):
        api.resize(cloud.ctx, vm['uuid'], 'big', wait=True)
    flow_id = repository.migration_list(vm['uuid'])[-1]['flow_id']
    assert flowstatus.show_flow(flow_id)['status'] == flowstatus.INTERRUPTED
    assert 0.5 <= _copy_disk(flow_id)['progress'] < 1.0

    assert api.resume_flow(cloud.ctx, flow_id)['flow_state'] == \
        tf_states.SUCCESS
    first, second = (call['stats'] for call in copies.calls)
    assert second.reused >= first.copied - 2 * 256 * KiB > 0
    assert first.copied + second.copied - second.data <= 0.1 * second.data
    resumed = [fraction for fraction, _logged in copies.calls[1]['seen']]
    assert resumed == sorted(resumed) and resumed[0] >= 0.4
    assert _copy_disk(flow_id)['progress'] == 1.0
    assert _has_the_data('host2', vm['uuid'])
    assert state.leaks() == []


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _listening(stream):
    return (lambda eng: common.ProgressListener(eng, stream),)


def test_cli_listener_prints_progress_lines_off_a_terminal(
        cloud, small_chunks, copies):
    vm = _server_with_data(cloud)
    out = io.StringIO()
    api.resize(cloud.ctx, vm['uuid'], 'big', listeners=_listening(out),
               wait=True)
    lines = out.getvalue().splitlines()
    progress = [line.split() for line in lines if line.endswith('%')]
    assert progress and all(p[0] == 'CopyDisk' for p in progress)
    percents = [int(p[1].rstrip('%')) for p in progress]
    assert percents == sorted(percents) and len(percents) <= 9
    assert len({p // 10 for p in percents}) == len(percents)  # 10 % steps
    assert [line.split()[:2] for line in lines if not line.endswith('%')
            ] == [[t, 'SUCCESS'] for t in (
                'BeginMigration', 'SelectDestination', 'ClaimResources',
                'PrepareDestination', 'PowerOffSource', 'MoveSourceToResize',
                'CopyDisk', 'FinishMigration', 'MarkMigrationFinished')]
    # progress comes right before CopyDisk's own line
    at = [line.split()[0] for line in lines].index('CopyDisk')
    assert lines[at + len(progress)].split()[:2] == ['CopyDisk', 'SUCCESS']


def test_cli_listener_draws_a_bar_on_a_terminal(cloud, small_chunks,
                                                copies):
    vm = _server_with_data(cloud)
    out = _Terminal()
    api.resize(cloud.ctx, vm['uuid'], 'big', listeners=_listening(out),
               wait=True)
    text = out.getvalue()
    bars = [part for part in text.split('\r') if '[' in part]
    assert len(bars) >= 5
    assert all(bar.split()[0] == 'CopyDisk' for bar in bars)
    assert '[' + '#' * common.ProgressListener.BAR_WIDTH + ']' in text
    # What the terminal shows at the end: each '\r' goes back to the start
    # of the line, the bar is wiped, and every task has its line.
    shown = []
    for line in text.split('\n'):
        screen = ''
        for part in line.split('\r'):
            screen = part + screen[len(part):]
        shown.append(screen.strip())
    assert [s.split()[:2] for s in shown if s] == [[t, 'SUCCESS'] for t in (
        'BeginMigration', 'SelectDestination', 'ClaimResources',
        'PrepareDestination', 'PowerOffSource', 'MoveSourceToResize',
        'CopyDisk', 'FinishMigration', 'MarkMigrationFinished')]
