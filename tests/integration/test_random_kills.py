"""Kills at random instants: real process deaths anywhere in an operation,
on real QEMU hosts, then recovery as an operator does it.

The crash matrix (test_crash_matrix.py) kills only at task boundaries.
Here each case is a *seed*, and the seed decides everything but the clock:

- the scenario: resize or migrate, then confirm or revert, of a stopped or
  a running guest;
- which ``resize-flows`` process dies: the move, the confirm or revert, or
  the operator's recovery (``flow resume`` / ``flow rollback``) of either,
  killed midway and then recovered again;
- the instant: a uniform fraction of the duration of that kind of process,
  as measured unkilled in the same run (every worker measures each kind
  once on a scratch server, and every later unkilled run of the kind adds
  to the estimate; a recovery counts as long as the operation it
  recovers). Half the kills (seeded) spread over the process's whole life,
  start to exit; the other half over the part from the moment its flow is
  under way (stored, or for a recovery leased) to its exit, which on this
  2-core machine is a small part of a process that spends most of its
  life starting Python: so kills land everywhere, in the interpreter's
  start-up, inside database transactions, mid disk copy, inside undo
  steps. The process group gets SIGKILL: nothing in it cleans up. When a
  recovery is to die, the operation it recovers is killed in the first
  60% of its flow first, so that there is a flow to recover;
- the operator's choices: once the dead process's lease has expired
  (CRASH_LEASE_SECONDS, polled in the flow log), ``flow list`` shows the
  interrupted or stuck flows, and each is resumed or rolled back (a
  rollback refused past a point of no return is followed by a resume);
  sometimes the user's next operation is tried first, and must be refused
  with a one-line conflict, changing nothing, while a flow is unfinished,
  or succeed when none is.

The reference plugins ``ports`` and ``volumes`` are enabled, in the
test process and in every ``resize-flows`` process (see
crash_servers.py), and each server has a port (a NIC of its guest) and a
volume (a virtio disk of its guest): their tasks run inside every flow,
where a kill may land too.

Before the operation the guest's disk gets seeded patterns (``qemu-io`` on
the stopped guest's disk; a running guest is started only then) and a
private copy (``qemu-img convert``). After every recovery the test checks
from outside, as the crash matrix does (``assert_consistent``): one domain
per instance, on the host the records name, in the power state they name,
exact allocations, the migration at rest, ``state.leaks()`` empty (with
the plugins' audits: every port bound ACTIVE on exactly the host the
records name, every attached volume connected to exactly one guest, on
that host, the domain there with the NIC and the disk); after a rollback
the whole cloud as before the operation (``state.capture``, the plugins'
records included, without the image caches: a base fetched by an undone
move stays cached); and ``qemu-img compare`` of the instance's disk with
the copy: identical content and the same virtual size while the instance
has its old flavor, identical content with the grown part zero after a
resize, and the source's ``<uuid>_resize`` disk identical while a move
waits for confirm or revert. Last, whatever move is left is confirmed or
reverted and everything is checked again.

A plain run (``make test``) runs the SAMPLE seeds; ``-m crash_matrix``
(``make crash-matrix``) or ``RESIZE_FLOWS_CRASH_MATRIX=full`` runs all of
SEEDS. To run one seed again (any number, listed or not)::

    RESIZE_FLOWS_RANDOM_KILLS=1234 .venv/bin/pytest \\
        tests/integration/test_random_kills.py

(several: ``RESIZE_FLOWS_RANDOM_KILLS=12,40``). The seed fixes the plan;
the instants scale with this run's measured durations, so a kill lands at
about, not exactly, the same point of the operation as in the run that
failed: a failure's message gives the kill times and what was running,
and running the seed a few times usually finds it again.
"""
import collections
import json
import os
import random
import signal
import statistics
import subprocess
import tempfile
import time

import pytest

from resize_flows import api
from resize_flows import flowstatus
from resize_flows.persistence import flowindex
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt import driver as virt_driver
from tests.integration.conftest import assert_consistent
from tests.integration.conftest import full_crash_run
from tests.integration.conftest import wait_leases_expired
from tests.integration.crash_servers import assert_devices

pytestmark = [pytest.mark.integration, pytest.mark.crash_matrix]

#: (move, resolve, running guest)
SCENARIOS = [(move, resolve, running)
             for move in ('resize', 'migrate')
             for resolve in ('confirm', 'revert')
             for running in (False, True)]
#: Which process dies: the move, its confirm or revert, or the recovery
#: (resume or rollback) of a killed move or of a killed confirm or revert.
TARGETS = ('move', 'resolve', 'move-recovery', 'resolve-recovery')
#: How often the operator tries the user's next operation before
#: recovering.
NEXT_OPERATION_FIRST = 0.3

SEEDS = list(range(1, 41))
#: The seeds of a plain run: each target twice, each scenario at least
#: once (see test_sample_covers_every_target_and_scenario).
SAMPLE = (1, 2, 3, 5, 6, 7, 11, 17)

_ENV = 'RESIZE_FLOWS_RANDOM_KILLS'


def _seeds():
    chosen = os.environ.get(_ENV)
    if chosen:
        return [int(s) for s in chosen.split(',') if s.strip()]
    return SEEDS


def plan(seed):
    """(move, resolve, running, target) of a seed, and the random.Random
    that the rest of the case draws from."""
    rng = random.Random(seed)
    move, resolve, running = rng.choice(SCENARIOS)
    target = rng.choice(TARGETS)
    return (move, resolve, running, target), rng


def _full_run(config):
    return bool(os.environ.get(_ENV)) or full_crash_run(config)


# -- the processes -----------------------------------------------------------

#: Wall times (seconds) of the unkilled processes of this worker, by
#: (kind, in_flow): kind resize, migrate, confirm or revert; in_flow False
#: from the process's start to its exit, True from the moment its flow
#: was seen stored to its exit.
_DURATIONS = collections.defaultdict(list)


def _command(kind, vm):
    return {
        'resize': ('server', 'resize', '--flavor', 'bigger', vm),
        'migrate': ('server', 'migrate', vm),
        'confirm': ('server', 'resize', 'confirm', vm),
        'revert': ('server', 'resize', 'revert', vm),
    }[kind] + ('-q', '-f', 'json')


def _group_alive(pgid):
    """Whether a process of process group ``pgid`` is still there."""
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry, 'rb') as handle:
                fields = handle.read().rsplit(b')', 1)[-1].split()
        except OSError:
            continue
        # fields: state, ppid, pgrp; a zombie is dead already.
        if int(fields[2]) == pgid and fields[0] != b'Z':
            return True
    return False


class Run:
    """One ``resize-flows`` process: its exit, output and wall time;
    ``in_flow``, the seconds from the moment its flow was seen under way
    to its exit (None when not watched or never seen); and ``killed``:
    whether SIGKILL ended it."""

    def __init__(self, args, returncode, stdout, stderr, elapsed, in_flow):
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.elapsed = elapsed
        self.in_flow = in_flow
        self.killed = returncode == -signal.SIGKILL

    def json(self):
        assert self.returncode == 0, (self.args, self.returncode,
                                      self.stderr)
        return json.loads(self.stdout) if self.stdout.strip() else None


def run(cloud, args, kill_after=None, under_way=None):
    """Run ``resize-flows ARGS`` in a process group of its own.
    ``under_way()``, polled while it runs, says when its flow is under way
    (stored by it, or leased by it). With ``kill_after`` seconds, SIGKILL
    the whole group that long after its start (with ``under_way``: after
    its flow was seen under way) unless it has exited. Returns once every
    process of the group is gone."""
    argv, env = cloud.hosts.command(*args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err,
                                start_new_session=True)
        seen = None
        try:
            if under_way is not None:
                while proc.poll() is None:
                    if under_way():
                        seen = time.monotonic()
                        break
                    time.sleep(0.05)
            if kill_after is None:
                proc.wait(timeout=600)
            else:
                base = started if seen is None else seen
                try:
                    proc.wait(timeout=max(0, base + kill_after -
                                          time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        ended = time.monotonic()
        deadline = ended + 60
        while _group_alive(proc.pid):
            assert time.monotonic() < deadline, (
                'process group %d outlived SIGKILL' % proc.pid)
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        return Run(args, proc.returncode, out.read().decode(),
                   err.read().decode(), ended - started,
                   None if seen is None else ended - seen)


def estimate(kind, in_flow=False):
    """The median wall time of the unkilled processes of ``kind`` (with
    ``in_flow``: from their flow's start on) in this worker."""
    return statistics.median(_DURATIONS[kind, in_flow])


def new_flow_of(vm):
    """A function that is true once ``vm`` has a flow it has not now."""
    known = {f['flow_id'] for f in flowstatus.list_flows(server=vm)}

    def seen():
        return any(f['flow_id'] not in known
                   for f in flowstatus.list_flows(server=vm))
    return seen


def leased(flow_id):
    """A function that is true once a live process holds ``flow_id``."""
    def seen():
        lease = flowindex.lease_get(flow_id)
        return bool(lease and lease['live'])
    return seen


def run_uncut(cloud, kind, vm):
    """The operation ``kind`` on ``vm``, unkilled, measured; its json."""
    done = run(cloud, _command(kind, vm), under_way=new_flow_of(vm))
    shown = done.json()
    _DURATIONS[kind, False].append(done.elapsed)
    if done.in_flow is not None:
        _DURATIONS[kind, True].append(done.in_flow)
    return shown


# -- disks -------------------------------------------------------------------

def _disk_path(host, vm, suffix=''):
    drv = virt.get_driver(repository.host_get(host))
    return os.path.join(drv.instance_dir(vm, suffix), 'disk')


def write_patterns(path, rng):
    """Seeded patterns in the disk at ``path`` (its guest is off): six
    extents of 4 to 16 MiB (enough for the copy to take a while), and the
    disk's last MiB."""
    size = repository.flavor_get('tiny')['root_gb'] * 1024
    extents = [(size - 1, 1)]
    for _ in range(6):
        length = rng.randint(4, 16)
        extents.append((rng.randrange(0, size - length), length))
    commands = []
    for offset, length in extents:
        commands += ['-c', 'write -q -P %d %dM %dM' % (
            rng.randrange(1, 256), offset, length)]
    subprocess.run(['qemu-io', '-f', 'qcow2'] + commands + [path],
                   check=True, capture_output=True)


def _virtual_size(path):
    proc = subprocess.run(['qemu-img', 'info', '-U', '--output=json', path],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)['virtual-size']


def compare(pristine, path, same_size):
    """``qemu-img compare`` of the private copy with the disk at ``path``:
    the same content, and beyond the copy's end only zeros (a resize grows
    the disk); with ``same_size`` the same virtual size too. (Not ``-s``:
    that also compares which clusters are allocated, which a copy does
    not keep.)"""
    proc = subprocess.run(
        ['qemu-img', 'compare', '-U', '-f', 'qcow2', '-F', 'qcow2',
         pristine, path], capture_output=True, text=True)
    assert proc.returncode == 0, 'disk %s differs from the copy taken ' \
        'before: %s' % (path, (proc.stdout + proc.stderr).strip())
    if same_size:
        assert _virtual_size(path) == _virtual_size(pristine), path


def where(flow_id):
    """Where in its flow a killed process was, as the flow log shows it
    (for the failure messages and the run log)."""
    if flow_id is None:
        return 'before its flow was stored'
    shown = flowstatus.show_flow(flow_id)
    busy = ['%s %s%s' % (t['name'], t['state'],
                         ' at %d%%' % (t['progress'] * 100)
                         if t['progress'] else '')
            for t in shown['tasks']
            if t['state'] in ('RUNNING', 'REVERTING')]
    if busy:
        return 'in %s' % ', '.join(busy)
    done = [t['name'] for t in shown['tasks']
            if t['state'] not in ('PENDING',)]
    return 'between tasks, flow %s, after %s' % (
        shown['state'], done[-1] if done else 'none')


# -- flows whose operation never started ------------------------------------

def never_started(vm, flow):
    """Whether ``flow`` was stored but its operation never started in the
    records (its process died between storing it and the compare-and-swap
    start): no task of it ran and no migration of ``vm`` names it. Such a
    flow owns nothing: it blocks no operation, and ``flow resume`` or
    ``flow rollback`` ends it rolled back, changing nothing else."""
    if flow in {m['flow_id'] for m in repository.migration_list(vm)}:
        return False
    return all(t['state'] == 'PENDING'
               for t in flowstatus.show_flow(flow)['tasks'])


# -- one case ----------------------------------------------------------------

class Case:
    """A seed's scenario on one server of the crash matrix's cloud."""

    def __init__(self, cloud, seed, tmp_path):
        self.cloud = cloud
        self.seed = seed
        (self.move, self.resolve, self.running,
         self.target), self.rng = plan(seed)
        self.tmp_path = tmp_path
        self.steps = []
        self.vm = None
        self.pristine = str(tmp_path / 'pristine.qcow2')
        self.tiny_gb = repository.flavor_get('tiny')['root_gb']

    def note(self, text):
        self.steps.append(' | '.join(
            line.strip() for line in text.splitlines() if line.strip()))

    def describe(self):
        return 'seed %d (%s then %s, %s guest, kill the %s): %s' % (
            self.seed, self.move, self.resolve,
            'running' if self.running else 'stopped', self.target,
            '; '.join(self.steps))

    # setting up
    def create_server(self, rng=None):
        """A server with seeded patterns on its disk, a port and a
        volume of the reference plugins, running if the scenario wants it
        so. Returns its uuid."""
        vm = self.cloud.server(power_on=False, devices=True)
        write_patterns(_disk_path('host1', vm), rng or self.rng)
        if self.running:
            virt.get_driver(repository.host_get('host1')).power_on(vm)
            repository.instance_update(vm, {
                'power_state': states.RUNNING,
                'vm_state': states.ACTIVE})
        return vm

    def calibrate(self):
        """Measure, once per worker, how long each kind of process takes
        unkilled: resize then revert, migrate then confirm, on a scratch
        server with the same kind of content."""
        if all(_DURATIONS[k, True] for k in ('resize', 'migrate',
                                             'confirm', 'revert')):
            return
        scratch = self.create_server(random.Random(self.seed))
        run_uncut(self.cloud, 'resize', scratch)
        run_uncut(self.cloud, 'revert', scratch)
        run_uncut(self.cloud, 'migrate', scratch)
        run_uncut(self.cloud, 'confirm', scratch)
        api.delete_server(self.cloud.ctx, scratch)
        self.note('measured (whole process / its flow) %s' % ', '.join(
            '%s %.1fs/%.1fs' % (k, estimate(k), estimate(k, True))
            for k in ('resize', 'revert', 'migrate', 'confirm')))

    # the checks
    def check(self):
        """Records, hypervisors and disks agree; the disk holds what it
        held before."""
        vm = self.vm
        wait_leases_expired(vm)
        assert_consistent(vm)
        assert_devices(vm)
        inst = repository.instance_get(vm)
        root_gb = repository.flavor_get(inst['flavor_id'])['root_gb']
        compare(self.pristine, _disk_path(inst['host'], vm),
                same_size=root_gb == self.tiny_gb)
        migs = repository.migration_list(vm)
        if migs and migs[-1]['status'] == states.MIGRATION_FINISHED:
            old_gb = repository.flavor_get(migs[-1]['old_flavor_id'])[
                'root_gb']
            compare(self.pristine,
                    _disk_path(migs[-1]['source_compute'], vm,
                               virt_driver.RESIZE_SUFFIX),
                    same_size=old_gb == self.tiny_gb)

    # killing
    def kill(self, kind, args, inside_flow=None, within=1.0):
        """Run ``args`` (a process as long as ``kind``'s) and kill it at a
        seeded fraction of its life: from its start to its exit, or (half
        the time, or when ``inside_flow``) from the moment its flow is
        under way to its exit; ``within``: of that part's first
        ``within``."""
        if args[0] == 'flow':
            flow = args[2]
            under_way = leased(flow)
        else:
            flow = None
            under_way = new_flow_of(self.vm)
            known = {f['flow_id']
                     for f in flowstatus.list_flows(server=self.vm)}
        if inside_flow is None:
            inside_flow = self.rng.random() < 0.5
        fraction = self.rng.random() * within
        span = estimate(kind, inside_flow)
        done = run(self.cloud, args, kill_after=fraction * span,
                   under_way=under_way if inside_flow else None)
        if flow is None:
            flow = ([f['flow_id']
                     for f in flowstatus.list_flows(server=self.vm)
                     if f['flow_id'] not in known] or [None])[0]
        self.note('%s %s at %.2fs (%.2f of %.1fs%s): %s' % (
            'killed' if done.killed else 'did not kill', ' '.join(args[:3]),
            done.elapsed, fraction, span,
            ' from its flow under way' if inside_flow else '',
            'SIGKILL %s' % where(flow) if done.killed else 'exit %d %s' % (
                done.returncode, done.stderr.strip()[-300:])))
        if done.killed:
            return done
        # It ended before its instant: it must have succeeded, or be a
        # rollback refused past a point of no return (resumed next).
        if args[0] == 'flow' and done.returncode != 0:
            message = done.stderr.strip()
            assert args[1] == 'rollback', message
            assert '\n' not in message, message
            assert 'deleted files already; resume' in message, message
        else:
            done.json()
        return done

    def unfinished(self, operator=True):
        """The operator's view: ``flow list`` of the server once no lease
        is held (the same read in this process unless ``operator``); its
        interrupted and stuck flows, oldest first."""
        flows = wait_leases_expired(self.vm)
        if operator:
            rows = self.cloud.cli_ok('flow', 'list', '--server', self.vm)
        else:
            rows = [{'Flow': f['flow_id'], 'Status': f['status']}
                    for f in flows]
        statuses = {r['Status'] for r in rows}
        assert statuses <= {flowstatus.INTERRUPTED, flowstatus.STUCK,
                            flowstatus.FINISHED, flowstatus.ROLLED_BACK}, rows
        return [r for r in reversed(rows)
                if r['Status'] in (flowstatus.INTERRUPTED, flowstatus.STUCK)]

    def next_operation(self):
        inst = repository.instance_get(self.vm)
        if inst['vm_state'] == states.RESIZED:
            return self.resolve
        if (self.move == 'resize' and
                inst['flavor_id'] == repository.flavor_get('tiny')['id']):
            return 'resize'
        return 'migrate'

    def try_next_operation(self, unfinished):
        """The user's next operation: refused while a flow is unfinished
        (one line, nothing changed), done when none is."""
        kind = self.next_operation()
        unfinished = [f for f in unfinished
                      if not never_started(self.vm, f['Flow'])]
        if not unfinished:
            self.note('no flow unfinished that started: next operation')
            self.start(kind)
            return
        before = state.capture(caches=False)
        flows = flowstatus.list_flows(server=self.vm)
        refused = run(self.cloud, _command(kind, self.vm)[:-2])
        message = refused.stderr.strip()
        self.note('%s refused: %s' % (kind, message))
        assert refused.returncode != 0, refused.stdout
        assert '\n' not in message, message
        assert 'is unfinished' in message, message
        assert unfinished[-1]['Flow'] in message, message
        assert state.capture(caches=False) == before
        assert flowstatus.list_flows(server=self.vm) == flows

    def recover(self, flow, verb, kill=False):
        """``flow VERB FLOW`` as the operator runs it, killed midway when
        ``kill``; a rollback refused past a point of no return is
        followed by a resume. Returns the Run."""
        args = ('flow', verb, flow, '-q', '-f', 'json')
        if kill:
            # A recovery redoes or undoes at most the whole operation.
            op = flowstatus.show_flow(flow)['operation']
            kind = {'resize': 'resize', 'migrate': 'migrate',
                    'confirm_resize': 'confirm',
                    'revert_resize': 'revert'}[op]
            return self.kill(kind, args)
        # A flow that was being undone goes on undoing when resumed.
        undoing = any(t['intention'] == 'REVERT'
                      for t in flowstatus.show_flow(flow)['tasks'])
        # One that never started ends rolled back whatever the verb.
        undoing = undoing or never_started(self.vm, flow)
        done = run(self.cloud, args)
        self.note('%s %s: exit %d %s' % (verb, flow, done.returncode,
                                         done.stderr.strip()[-300:]))
        if verb == 'rollback' and done.returncode != 0:
            message = done.stderr.strip()
            assert '\n' not in message, message
            assert 'deleted files already; resume' in message, message
            return self.recover(flow, 'resume')
        shown = done.json()
        assert shown['status'] == (
            flowstatus.FINISHED if verb == 'resume' and not undoing
            else flowstatus.ROLLED_BACK), shown
        return done

    def operator(self, kill_recovery=False):
        """Recover as an operator would, until no flow is unfinished,
        checking after each recovery."""
        unfinished = self.unfinished()
        if self.rng.random() < NEXT_OPERATION_FIRST:
            self.try_next_operation(unfinished)
            if not unfinished:
                self.check()
                unfinished = self.unfinished(operator=False)
        if kill_recovery and not unfinished:
            self.note('no flow to recover: no recovery to kill')
        for row in unfinished:
            flow = row['Flow']
            verb = self.rng.choice(('resume', 'rollback'))
            if row['Status'] == flowstatus.STUCK:
                # An undo step failed: fix the cause, then roll back (a
                # resume is refused).
                verb = 'rollback'
            if kill_recovery:
                kill_recovery = False
                self.recover(flow, verb, kill=True)
                self.check_if_at_rest(flow)
                return self.operator()
            if never_started(self.vm, flow):
                # It owns nothing: its recovery changes nothing, whatever
                # ran on the server since.
                before = state.capture(caches=False)
                self.recover(flow, verb)
                assert state.capture(caches=False) == before
                self.check()
                continue
            self.recover(flow, verb)
            self.check_after(flow)
        assert self.unfinished(operator=False) == []

    def check_if_at_rest(self, flow):
        """After a killed recovery that might have ended its flow."""
        if flowstatus.show_flow(flow)['status'] in (flowstatus.FINISHED,
                                                    flowstatus.ROLLED_BACK):
            self.check_after(flow)

    def check_after(self, flow):
        shown = flowstatus.show_flow(flow)
        if shown['status'] == flowstatus.ROLLED_BACK:
            # The whole cloud as before the operation of that flow.
            assert state.capture(caches=False) == self.captures[flow]
        self.check()

    def start(self, kind, kill=False, inside_flow=None, within=1.0):
        """Run the operation ``kind``: unkilled, or killed. Records the
        cloud before it for the flow it stores."""
        before = state.capture(caches=False)
        known = {f['flow_id']
                 for f in flowstatus.list_flows(server=self.vm)}
        if kill:
            self.kill(kind, _command(kind, self.vm),
                      inside_flow=inside_flow, within=within)
        else:
            run_uncut(self.cloud, kind, self.vm)
            self.note('%s done' % kind)
        for f in flowstatus.list_flows(server=self.vm):
            if f['flow_id'] not in known:
                self.captures[f['flow_id']] = before

    def play(self):
        self.captures = {}
        self.calibrate()
        self.vm = self.create_server()
        inst = repository.instance_get(self.vm)
        subprocess.run(
            ['qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'qcow2',
             _disk_path(inst['host'], self.vm), self.pristine], check=True)
        self.check()
        # To kill a recovery, the operation is killed in the first 60% of
        # its flow first: a flow to recover, most of the time.
        recovery = self.target.endswith('-recovery')
        first = dict(kill=True, inside_flow=True, within=0.6) if recovery \
            else dict(kill=True)
        if self.target.startswith('move'):
            self.start(self.move, **first)
        else:
            self.start(self.move)
            self.check()
            self.start(self.resolve, **first)
        self.operator(kill_recovery=recovery)
        self.check()
        # Whatever move is left waits for its confirm or revert.
        if repository.instance_get(self.vm)['vm_state'] == states.RESIZED:
            self.start(self.resolve)
            self.check()
        assert {m['status'] for m in repository.migration_list(self.vm)
                } <= set(states.MIGRATION_TERMINAL)


def _log(case, outcome):
    """With RESIZE_FLOWS_RANDOM_KILLS_LOG=FILE, one line per case: its
    seed, plan, steps and outcome (where the kills landed)."""
    path = os.environ.get(_ENV + '_LOG')
    if path:
        with open(path, 'a') as handle:
            handle.write('%s -> %s\n' % (case.describe(),
                                         outcome.replace('\n', ' ')))


@pytest.mark.parametrize('seed', _seeds(), ids=lambda s: 'seed-%d' % s)
def test_random_kill(request, crash_cloud, tmp_path, seed):
    """One seed's scenario, kill and recovery (see the module docstring;
    run this seed alone with RESIZE_FLOWS_RANDOM_KILLS=<seed>)."""
    if seed not in SAMPLE and not _full_run(request.config):
        pytest.skip('random kills: seed %d runs with -m crash_matrix or '
                    'RESIZE_FLOWS_CRASH_MATRIX=full' % seed)
    case = Case(crash_cloud, seed, tmp_path)
    try:
        case.play()
        _log(case, 'passed')
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, pytest.skip.Exception)):
            raise
        _log(case, 'FAILED %s: %s' % (type(e).__name__, e))
        raise AssertionError('%s\n-> %s: %s\nrun it again with %s=%d' % (
            case.describe(), type(e).__name__, e, _ENV, seed)) from e


def test_sample_covers_every_target_and_scenario():
    targets = collections.Counter(plan(s)[0][3] for s in SAMPLE)
    scenarios = {plan(s)[0][:3] for s in SAMPLE}
    assert set(targets) == set(TARGETS) and min(targets.values()) >= 2, \
        targets
    assert scenarios == set(SCENARIOS), scenarios
    assert set(SAMPLE) <= set(SEEDS)
