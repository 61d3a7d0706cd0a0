"""``host drain`` killed at random instants, on real QEMU hosts, and run
again until the host is empty.

A drain is many flows in one process: moves N at a time, confirms beside
them. Killing it leaves any mix of moves not started, cut off in any
task, finished and waiting for their confirm, and confirms cut off; the
operator's answer is to run the drain again (the README). Each case is a
*seed* that decides:

- three servers on host1, each with a port and a volume of the reference
  plugins and seeded patterns on its disk, one of them running or none;
- ``--parallel`` 1 or 2;
- the instant the drain's process group gets SIGKILL: uniform over the
  time the whole drain takes unkilled, measured once per worker on
  scratch servers (so kills land in Python's start-up, in the moves,
  between them, in the confirms);
- whether the next run (the recovery) is killed too, at another instant.

Then, once the dead processes' leases have expired, the drain is run
unkilled until no server is left on host1 (at most three runs: a move
that a run found being undone ends failed and the next run moves it).
Checked from outside: every server on host2 with its power state, one
domain each (virsh, through ``assert_consistent``), its port bound and
volume connected there, its disk identical to a copy taken before
(``qemu-img compare``), every migration at rest, ``state.leaks()``
empty, and no flow of theirs left interrupted except one that never
started (it owns nothing).

A plain run (``make test``) runs SAMPLE; ``-m crash_matrix`` all SEEDS;
one seed again: ``RESIZE_FLOWS_DRAIN_KILLS=3 .venv/bin/pytest
tests/integration/test_drain_kills.py``.
"""
import json
import os
import random
import subprocess

import pytest

from resize_flows import api
from resize_flows import flowstatus
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows import virt
from tests.integration.conftest import assert_consistent
from tests.integration.conftest import full_crash_run
from tests.integration.conftest import wait_leases_expired
from tests.integration.crash_servers import assert_devices
from tests.integration import test_random_kills as kills

pytestmark = [pytest.mark.integration, pytest.mark.crash_matrix]

SERVERS = 3
SEEDS = list(range(1, 9))
#: A plain run's seeds: both parallelisms, a killed recovery and not.
SAMPLE = (3, 5)
_ENV = 'RESIZE_FLOWS_DRAIN_KILLS'


def plan(seed):
    rng = random.Random(seed)
    return {'parallel': rng.choice((1, 2)),
            'running': rng.randrange(-1, SERVERS),   # -1: none runs
            'kill_recovery': rng.random() < 0.5}, rng


def _seeds():
    chosen = os.environ.get(_ENV)
    if chosen:
        return [int(s) for s in chosen.split(',') if s.strip()]
    return SEEDS


def _drain(parallel):
    return ('host', 'drain', 'host1', '--parallel', str(parallel),
            '-f', 'json')


#: Wall times of the unkilled drains of SERVERS stopped servers measured
#: in this worker, by --parallel.
_DRAINS = {}


def _estimate(cloud, rng, parallel):
    """Seconds an unkilled drain of SERVERS servers takes here: measured
    once per worker and parallelism, on scratch servers like the case's
    (stopped, with patterns on their disks, a port and a volume)."""
    if parallel not in _DRAINS:
        scratch = []
        for _ in range(SERVERS):
            scratch.append(cloud.server(power_on=False, devices=True))
            kills.write_patterns(kills._disk_path('host1', scratch[-1]),
                                 rng)
        done = kills.run(cloud, _drain(parallel))
        assert done.returncode == 0, done.stderr
        assert {r['Status'] for r in json.loads(done.stdout)} == {
            'confirmed'}, done.stdout
        _DRAINS[parallel] = done.elapsed
        api.enable_host(cloud.ctx, 'host1')
        for vm in scratch:             # host2 has room for the case's
            api.delete_server(cloud.ctx, vm)
    return _DRAINS[parallel]


def _settle(vms):
    for vm in vms:
        wait_leases_expired(vm)


def _play(cloud, seed, tmp_path, steps):
    how, rng = plan(seed)
    total = _estimate(cloud, rng, how['parallel'])
    vms, pristine, power = [], {}, {}
    for i in range(SERVERS):
        vm = cloud.server(power_on=False, devices=True)
        kills.write_patterns(kills._disk_path('host1', vm), rng)
        pristine[vm] = str(tmp_path / ('%s.qcow2' % vm))
        subprocess.run(['qemu-img', 'convert', '-U', '-f', 'qcow2', '-O',
                        'qcow2', kills._disk_path('host1', vm),
                        pristine[vm]], check=True)
        if i == how['running']:
            virt.get_driver(repository.host_get('host1')).power_on(vm)
            repository.instance_update(vm, {
                'power_state': states.RUNNING, 'vm_state': states.ACTIVE})
        power[vm] = repository.instance_get(vm)['power_state']
        vms.append(vm)

    for round_, kill in enumerate(('drain', 'recovery')):
        if kill == 'recovery' and not how['kill_recovery']:
            break
        after = rng.uniform(0, total)
        done = kills.run(cloud, _drain(how['parallel']), kill_after=after)
        steps.append('%s: %s after %.1fs of %.1fs' % (
            kill, 'killed' if done.killed else 'exited %d' %
            done.returncode, after, total))
        _settle(vms)

    for _ in range(3):
        left = [vm for vm in vms
                if repository.instance_get(vm)['host'] == 'host1'
                or repository.instance_get(vm)['vm_state'] ==
                states.RESIZED]
        if not left:
            break
        done = kills.run(cloud, _drain(how['parallel']))
        assert done.returncode in (0, 1), (done.returncode, done.stderr)
        rows = json.loads(done.stdout)
        steps.append('run: %s' % ', '.join(
            '%s %s%s' % (r['Name'], r['Status'], ' (%s)' % r['Reason']
                         if r['Reason'] else '') for r in rows))
        _settle(vms)
    else:
        raise AssertionError('three drains left %s on host1' % left)

    for vm in vms:
        inst = repository.instance_get(vm)
        assert (inst['host'], inst['vm_state'], inst['power_state']) == (
            'host2', states.vm_state_for_power(power[vm]), power[vm]), inst
        assert_consistent(vm)
        assert_devices(vm)
        kills.compare(pristine[vm], kills._disk_path('host2', vm),
                      same_size=True)
        assert {m['status'] for m in repository.migration_list(vm)} <= {
            states.MIGRATION_CONFIRMED, states.MIGRATION_ERROR}
        left = [f['flow_id'] for f in flowstatus.list_flows(server=vm)
                if f['status'] not in (flowstatus.FINISHED,
                                       flowstatus.ROLLED_BACK)
                and not kills.never_started(vm, f['flow_id'])]
        assert left == [], left


@pytest.mark.parametrize('seed', _seeds(), ids=lambda s: 'seed-%d' % s)
def test_drain_killed_then_run_again(request, crash_cloud, tmp_path, seed):
    if seed not in SAMPLE and not (os.environ.get(_ENV) or
                                   full_crash_run(request.config)):
        pytest.skip('drain kills: seed %d runs with -m crash_matrix or '
                    'RESIZE_FLOWS_CRASH_MATRIX=full' % seed)
    steps = []
    try:
        _play(crash_cloud, seed, tmp_path, steps)
        print('seed %d %s: %s' % (seed, plan(seed)[0], '; '.join(steps)))
    except AssertionError as e:
        raise AssertionError('seed %d %s: %s\n-> %s\nrun it again with '
                             '%s=%d' % (seed, plan(seed)[0],
                                        '; '.join(steps), e, _ENV,
                                        seed)) from e
    finally:
        # The shared hosts serve the next tests: host1 takes servers again.
        api.enable_host(crash_cloud.ctx, 'host1')


def test_sample_covers_both_parallelisms_and_killed_recoveries():
    plans = [plan(s)[0] for s in SAMPLE]
    assert {p['parallel'] for p in plans} == {1, 2}
    assert {p['kill_recovery'] for p in plans} == {True, False}
