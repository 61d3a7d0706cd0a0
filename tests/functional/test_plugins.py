"""The plugin framework, proved with a plugin from outside the project.

tests/outside_plugin.py installs ``rf-tracer`` at test time as a real
distribution (a module and its ``.dist-info`` with an entry point of the
``resize_flows.plugins`` group, on ``sys.path``); its ``tracer`` plugin
(tests/fixtures/outside_plugin/rf_tracer.py) has a task at every point of
every operation, recording each call and what it saw of the hosts then,
and gives every guest a NIC. On libvirt's test driver hosts and a real
SQLite database this checks that its tasks run inside every flow at their
point, are listed by ``flow show``, are undone when a later step fails,
are resumed and rolled back after a crash, that a flow is rebuilt with
the plugins it recorded, and that a plugin that is missing or gives a bad
device is refused with one line, changing nothing.
"""
import hashlib
import io
import json
import os

import libvirt
import pytest
import sqlalchemy
from taskflow.listeners import capturing
from taskflow import states as tf

from resize_flows import api
from resize_flows.cmd import shell
from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows import flowstatus
from resize_flows import plugins
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows.virt.libvirt import config
from resize_flows.virt.libvirt import host as libvirt_host
from resize_flows.virt.libvirt import layout
from resize_flows import virt
from tests import outside_plugin

RUN, OK = tf.RUNNING, tf.SUCCESS
UNDOING, UNDONE = tf.REVERTING, tf.REVERTED

#: Each flow's atoms in order with tracer's, written out.
MOVE = ['BeginMigration', 'SelectDestination', 'TryDestinations',
        'ClaimResources', 'PrepareDestination',
        'tracer.BeforePowerOff',
        'PowerOffSource', 'MoveSourceToResize', 'CopyDisk',
        'tracer.BindDest',
        'FinishMigration',
        'tracer.AfterDestRuns',
        'MarkMigrationFinished']
ATOMS = {
    'resize': MOVE,
    'migrate': MOVE,
    'confirm_resize': ['BeginConfirm', 'ReleaseSourceClaim', 'MarkConfirmed',
                       'tracer.ConfirmCleanup',
                       'CleanupSource'],
    'revert_resize': ['BeginRevert', 'DestroyDestination',
                      'tracer.BindSource',
                      'RestoreSource', 'ReleaseDestinationClaim',
                      'PowerOnSource',
                      'tracer.AfterSourceRuns',
                      'MarkReverted', 'DeleteDestinationFiles'],
}
OPERATIONS = tuple(ATOMS)
POINTS = (faults.BEFORE_EXECUTE, faults.AFTER_EXECUTE)
R, OFF, NONE = states.RUNNING, states.SHUTDOWN, states.NOSTATE
#: What each tracer task saw when it ran (a server moved from host1 to
#: host2): the migration's status, the guest's power state on the source
#: and on the destination, the host its record names.
SEEN = {
    'tracer.BeforePowerOff': ('pre-migrating', R, NONE, 'host1'),
    'tracer.BindDest': ('post-migrating', OFF, NONE, 'host1'),
    'tracer.AfterDestRuns': ('post-migrating', OFF, R, 'host1'),
    'tracer.ConfirmCleanup': ('confirmed', OFF, R, 'host2'),
    'tracer.BindSource': ('reverting', OFF, NONE, 'host2'),
    'tracer.AfterSourceRuns': ('reverting', R, NONE, 'host2'),
}


def _tracer_atoms(operation):
    return [a for a in ATOMS[operation] if a.startswith('tracer.')]


def _effects(operation):
    """The tracer tasks in effect for the migration once ``operation``
    succeeded (a confirm or a revert follows its move's)."""
    found = set(_tracer_atoms(operation))
    if operation in ('confirm_resize', 'revert_resize'):
        found |= set(_tracer_atoms('resize'))
    return sorted(found)


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """rf-tracer installed (and only for this test)."""
    dist = outside_plugin.install(tmp_path, monkeypatch)
    yield dist
    outside_plugin.forget()


@pytest.fixture
def tracer(outside, conf):
    """``[DEFAULT]/plugins = tracer``; the plugin's module."""
    conf.set_override('plugins', ['tracer'])
    return outside.module


class StoryListener(capturing.CaptureListener):
    """CaptureListener keeping ``(atom or flow name, state)``."""

    @staticmethod
    def _format_capture(kind, state, details):
        return (details['%s_name' % kind], state)


def _run(cloud, operation, vm, story=None):
    listeners = ((lambda engine: StoryListener(engine, values=story),)
                 if story is not None else ())
    if operation == 'resize':
        return api.resize(cloud.ctx, vm, 'big', wait=True,
                          listeners=listeners)
    return getattr(api, operation)(cloud.ctx, vm, wait=True,
                                   listeners=listeners)


def _server(cloud, operation):
    """A server ready for ``operation`` (resized first for a confirm or a
    revert)."""
    vm = cloud.server()['uuid']
    if operation in ('confirm_resize', 'revert_resize'):
        api.resize(cloud.ctx, vm, 'big', wait=True)
    return vm


def _calls(tracer, migration=None, method=None):
    return [(atom, meth) for atom, meth, mig, _seen in tracer.calls()
            if migration in (None, mig) and method in (None, meth)]


def _domain_xml(host, uuid):
    drv = virt.get_driver(repository.host_get(host))
    dom = libvirt_host.get_connection(drv.uri).lookupByUUIDString(uuid)
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)


def _database():
    """Every row of every table of the resize-flows database and the
    bytes of the plugin's own: what a refused request must not change."""
    engine = sqlalchemy.create_engine(CONF.database.connection)
    try:
        meta = sqlalchemy.MetaData()
        with engine.connect() as conn:
            meta.reflect(conn)
            rows = {name: sorted(repr(tuple(r)) for r in conn.execute(
                table.select())) for name, table in meta.tables.items()}
    finally:
        engine.dispose()
    path = os.path.join(CONF.state_dir, 'rf-tracer.sqlite')
    if os.path.exists(path):
        with open(path, 'rb') as handle:
            rows['rf-tracer.sqlite'] = hashlib.sha256(
                handle.read()).hexdigest()
    return rows


def _cli(tmp_path, *argv):
    """``resize-flows ARGV`` in this process (the test's configuration
    stays: its overrides win over the empty file); (exit, out, err)."""
    conf_file = tmp_path / 'empty.conf'
    conf_file.write_text('')
    out, err = io.StringIO(), io.StringIO()
    code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(
        ['--config-file', str(conf_file)] + list(argv))
    return code, out.getvalue(), err.getvalue()


# -- the distribution --------------------------------------------------------

def test_the_distribution_is_found_as_an_installed_one(outside, conf):
    from importlib import metadata
    dist = metadata.distribution('rf-tracer')
    assert dist.version == '1.0'
    assert {(ep.name, ep.value) for ep in dist.entry_points
            if ep.group == plugins.NAMESPACE} == {
        ('tracer', 'rf_tracer:Tracer'), ('badnic', 'rf_tracer:BadDevice')}
    [loaded] = plugins.load(['tracer'])
    assert loaded.name == 'tracer'
    assert type(loaded).__module__ == 'rf_tracer'
    assert os.path.dirname(outside.module.__file__) == str(outside.site)
    # stevedore scanned through the test's own cache, nowhere else.
    assert os.listdir(outside.cache_dir)
    outside.uninstall()
    with pytest.raises(exception.PluginNotInstalled,
                       match='^Plugin tracer is not installed: no entry '
                             'point of that name'):
        plugins.load(['tracer'])
    outside.reinstall()
    assert [p.name for p in plugins.load(['tracer', 'badnic'])] == [
        'tracer', 'badnic']


# -- inside every flow -------------------------------------------------------

@pytest.mark.parametrize('operation', OPERATIONS)
def test_its_tasks_run_inside_every_flow_at_their_points(cloud, tracer,
                                                         operation):
    vm = _server(cloud, operation)
    story = []
    result = _run(cloud, operation, vm, story)
    assert result['flow_state'] == OK
    atoms = ATOMS[operation]
    assert story == ([(operation, RUN)]
                     + [(a, s) for a in atoms for s in (RUN, OK)]
                     + [(operation, OK)])
    mig = result['migration']['uuid']
    keys = ('status', 'source', 'dest', 'host')
    ran = [(atom, tuple(seen[k] for k in keys))
           for atom, meth, m, seen in tracer.calls()
           if m == mig and atom in _tracer_atoms(operation)]
    assert ran == [(a, SEEN[a]) for a in _tracer_atoms(operation)]
    # Each took effect once; the NIC is bound where the server is.
    assert [a for m, a in tracer.done() if m == mig] == _effects(operation)
    assert tracer.bindings() == {vm: repository.instance_get(vm)['host']}
    assert state.leaks() == []


def test_flow_show_lists_its_tasks_and_names_the_plugin(cloud, tracer,
                                                        tmp_path):
    vm = cloud.server()['uuid']
    flow_id = api.migrate(cloud.ctx, vm, wait=True)['flow_id']
    shown = api.show_flow(cloud.ctx, flow_id)
    assert shown['plugins'] == ['tracer']
    assert [(t['name'], t['state']) for t in shown['tasks']] == [
        (a, OK) for a in MOVE if a != 'TryDestinations']
    code, out, err = _cli(tmp_path, 'flow', 'show', flow_id, '-f', 'json')
    assert code == 0, err
    shown = json.loads(out)
    assert shown['plugins'] == ['tracer']
    assert 'tracer.BindDest' in [t['name'] for t in shown['tasks']]
    code, out, err = _cli(tmp_path, 'flow', 'show', flow_id)
    assert code == 0, err
    assert 'tracer.AfterDestRuns' in out
    assert [[cell.strip() for cell in line.split('|')[1:3]]
            for line in out.splitlines() if 'plugins' in line] == [
        ['plugins', 'tracer']]


def test_the_guest_has_its_nic_on_each_host(cloud, tracer):
    vm = cloud.server()['uuid']
    nic = {'type': 'interface', 'id': 'nic0', 'mac': tracer.nic_mac(vm)}
    assert config.plugin_devices(_domain_xml('host1', vm)) == {
        'tracer': [nic]}
    api.migrate(cloud.ctx, vm, wait=True)
    xml = _domain_xml('host2', vm)
    assert config.plugin_devices(xml) == {'tracer': [nic]}
    # The guest's own NIC is there too, first.
    assert config.devices(xml)[1] == layout.mac_address(vm)
    api.confirm_resize(cloud.ctx, vm, wait=True)
    assert config.plugin_devices(_domain_xml('host2', vm)) == {
        'tracer': [nic]}


# -- undone when a later step fails ------------------------------------------

#: (operation, failing atom): a core task after the plugin's last, and
#: each of the plugin's tasks itself.
FAILURES = ([('resize', 'MarkMigrationFinished'),
             ('migrate', 'FinishMigration'),
             ('confirm_resize', 'CleanupSource'),
             ('revert_resize', 'MarkReverted')]
            + [(op, a) for op in OPERATIONS if op != 'migrate'
               for a in _tracer_atoms(op)])


@pytest.mark.sweep
@pytest.mark.parametrize('point', POINTS)
@pytest.mark.parametrize('operation, atom', FAILURES)
def test_undone_when_a_later_step_fails(cloud, tracer, operation, atom,
                                        point):
    if atom == 'CleanupSource' and point == faults.AFTER_EXECUTE:
        pytest.skip('past the point of no return: tests/functional/'
                    'test_faults.py')
    vm = _server(cloud, operation)
    before = state.capture()
    calls_before = len(tracer.calls())
    faults.inject(atom, point)
    with pytest.raises(faults.InjectedFault):
        _run(cloud, operation, vm)
    assert faults.hits(atom, point) == 1
    assert state.capture() == before
    assert state.leaks() == []
    atoms = ATOMS[operation]
    ran = [a for a in _tracer_atoms(operation)
           if atoms.index(a) < atoms.index(atom)]
    if atom.startswith('tracer.'):
        # The failed task is undone too (TaskFlow reverts it).
        ran.append(atom)
    new = [(a, m) for a, m, _mig, _seen in tracer.calls()[calls_before:]]
    assert [a for a, m in new if m == 'revert'] == ran[::-1]
    executed = [a for a, m in new if m == 'execute']
    assert executed == (ran[:-1] if atom.startswith('tracer.') and
                        point == faults.BEFORE_EXECUTE else ran)
    # Nothing is stuck: the operation then succeeds.
    faults.clear()
    _run(cloud, operation, vm)
    assert state.leaks() == []


# -- resumed and rolled back after a crash -----------------------------------

CRASHES = [(op, a, p) for op in OPERATIONS if op != 'migrate'
           for a in _tracer_atoms(op) for p in POINTS]


def _crash(cloud, operation, atom, point):
    """Run ``operation`` so that it dies at ``atom``/``point``; (vm,
    snapshot before, flow id, migration uuid)."""
    vm = _server(cloud, operation)
    before = state.capture()
    faults.inject(atom, point, exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        _run(cloud, operation, vm)
    faults.clear()
    mig = repository.migration_list(vm)[-1]
    assert flowstatus.show_flow(mig['flow_id'])['status'] == \
        flowstatus.INTERRUPTED
    return vm, before, mig['flow_id'], mig['uuid']


@pytest.mark.parametrize('operation, atom, point', CRASHES)
def test_resumed_after_a_crash_done_once(cloud, tracer, operation, atom,
                                         point):
    vm, _before, flow_id, mig = _crash(cloud, operation, atom, point)
    ran_before = _calls(tracer, mig, 'execute').count((atom, 'execute'))
    assert ran_before == (0 if point == faults.BEFORE_EXECUTE else 1)
    story = []
    assert api.resume_flow(cloud.ctx, flow_id, listeners=(
        lambda engine: StoryListener(engine, values=story),))[
            'flow_state'] == OK
    # It ran again (the crash left it RUNNING), then every task after it.
    atoms = ATOMS[operation]
    assert [a for a, s in story if s == OK and a != operation] == \
        atoms[atoms.index(atom):]
    assert _calls(tracer, mig, 'execute').count((atom, 'execute')) == \
        ran_before + 1
    # Done once, not twice: one effect per task, none undone.
    assert [a for m, a in tracer.done() if m == mig] == _effects(operation)
    assert _calls(tracer, mig, 'revert') == []
    assert tracer.bindings() == {vm: repository.instance_get(vm)['host']}
    assert state.leaks() == []


@pytest.mark.parametrize('operation, atom, point', CRASHES)
def test_rolled_back_after_a_crash(cloud, tracer, operation, atom, point):
    vm, before, flow_id, mig = _crash(cloud, operation, atom, point)
    assert api.rollback_flow(cloud.ctx, flow_id)['flow_state'] == UNDONE
    assert state.capture() == before
    assert state.leaks() == []
    atoms = ATOMS[operation]
    ran = [a for a in _tracer_atoms(operation)
           if atoms.index(a) <= atoms.index(atom)]
    assert [a for a, m in _calls(tracer, mig, 'revert')] == ran[::-1]


# -- the plugins a flow records ----------------------------------------------

def test_resume_uses_the_plugins_the_flow_recorded(cloud, tracer, conf):
    vm, _before, flow_id, mig = _crash(cloud, 'resize', 'CopyDisk',
                                       faults.BEFORE_EXECUTE)
    assert _calls(tracer, mig) == [('tracer.BeforePowerOff', 'execute')]
    conf.set_override('plugins', [])
    assert api.show_flow(cloud.ctx, flow_id)['plugins'] == ['tracer']
    api.resume_flow(cloud.ctx, flow_id)
    assert _calls(tracer, mig) == [
        ('tracer.BeforePowerOff', 'execute'), ('tracer.BindDest', 'execute'),
        ('tracer.AfterDestRuns', 'execute')]
    # And the other way: a flow built without plugins gets none on resume.
    conf.set_override('plugins', [])
    api.confirm_resize(cloud.ctx, vm, wait=True)
    vm2 = cloud.server('vm2')['uuid']
    faults.inject('CopyDisk', exc_class=faults.SimulatedCrash)
    with pytest.raises(faults.SimulatedCrash):
        api.migrate(cloud.ctx, vm2, wait=True)
    faults.clear()
    mig2 = repository.migration_list(vm2)[-1]
    conf.set_override('plugins', ['tracer'])
    assert api.show_flow(cloud.ctx, mig2['flow_id'])['plugins'] == []
    api.resume_flow(cloud.ctx, mig2['flow_id'])
    assert _calls(tracer, mig2['uuid']) == []
    assert repository.migration_get(mig2['uuid'])['status'] == \
        states.MIGRATION_FINISHED


def _one_line(text, *words):
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    for word in words:
        assert word in lines[0]
    assert 'Traceback' not in text
    return lines[0]


def test_a_flow_whose_plugin_is_gone_is_refused_changing_nothing(
        cloud, tracer, outside, conf, tmp_path):
    vm, _before, flow_id, mig = _crash(cloud, 'resize', 'CopyDisk',
                                       faults.AFTER_EXECUTE)
    outside.uninstall()
    conf.set_override('plugins', [])
    before = (_database(), state.capture())
    # The flow log, its lease and the plugin's records are in the compare.
    assert {'flow_atoms', 'flow_details', 'flow_leases', 'migrations',
            'rf-tracer.sqlite'} <= set(before[0])
    assert before[0]['flow_atoms']
    for call in (api.resume_flow, api.rollback_flow):
        with pytest.raises(exception.PluginNotInstalled) as e:
            call(cloud.ctx, flow_id)
        _one_line(str(e.value), 'Plugin tracer is not installed: no entry')
    outcome = api.resume_interrupted(cloud.ctx)
    assert isinstance(outcome[flow_id], exception.PluginNotInstalled)
    for command in ('resume', 'rollback'):
        code, out, err = _cli(tmp_path, 'flow', command, flow_id)
        assert code != 0
        _one_line(err, 'Plugin tracer is not installed')
    assert (_database(), state.capture()) == before
    # flow show still tells what the flow holds, from the flow log.
    shown = api.show_flow(cloud.ctx, flow_id)
    assert shown['plugins'] == ['tracer']
    assert 'tracer.BeforePowerOff' in [t['name'] for t in shown['tasks']]
    # Installed again, it resumes.
    outside.reinstall()
    assert api.resume_flow(cloud.ctx, flow_id)['flow_state'] == OK
    conf.set_override('plugins', ['tracer'])
    assert state.leaks() == []


def test_a_plugin_enabled_but_not_installed_refuses_a_move(
        cloud, outside, conf, tmp_path):
    vm = cloud.server()['uuid']
    conf.set_override('plugins', ['nosuch'])
    before = _database()
    with pytest.raises(exception.PluginNotInstalled) as e:
        api.migrate(cloud.ctx, vm, wait=True)
    _one_line(str(e.value), 'Plugin nosuch is not installed')
    code, out, err = _cli(tmp_path, 'server', 'migrate', vm)
    assert code != 0
    _one_line(err, 'Plugin nosuch is not installed')
    assert _database() == before
    conf.set_override('plugins', [])
    assert repository.instance_get(vm)['task_state'] is None
    assert state.leaks() == []


def test_a_plugin_that_gives_a_bad_device_is_refused(cloud, tracer, conf):
    vm = cloud.server()['uuid']
    conf.set_override('plugins', ['tracer', 'badnic'])
    before = state.capture()
    with pytest.raises(exception.InvalidInput) as e:
        api.resize(cloud.ctx, vm, 'big', wait=True)
    _one_line(str(e.value), "plugin badnic: device id 'bad id!' is not")
    assert state.capture() == before
    assert state.leaks() == []
    with pytest.raises(exception.InvalidInput, match='plugin badnic'):
        cloud.server('vm2')
    assert state.capture() == before


# -- testing.state -----------------------------------------------------------

def test_capture_and_leaks_count_the_enabled_plugins(cloud, tracer, conf):
    vm = cloud.server()['uuid']
    assert state.capture()['plugins'] == {
        'tracer': {'done': [], 'bindings': {}}}
    result = api.migrate(cloud.ctx, vm, wait=True)
    mig = result['migration']['uuid']
    assert state.capture()['plugins']['tracer'] == {
        'done': [(mig, a) for a in sorted(_tracer_atoms('migrate'))],
        'bindings': {vm: 'host2'}}
    assert state.leaks() == []
    # A binding the records do not account for is the plugin's finding.
    conn = tracer.connect()
    with conn:
        conn.execute("UPDATE bindings SET host = 'host1'")
    conn.close()
    assert state.capture()['plugins']['tracer']['bindings'] == {
        vm: 'host1'}
    assert state.leaks() == [
        'plugin tracer: NIC of %s bound on host1, its host is host2' % vm]
    # Not enabled, not counted.
    conf.set_override('plugins', [])
    assert state.capture()['plugins'] == {}
    assert state.leaks() == []


def test_server_delete_tells_the_plugin(cloud, tracer):
    vm = cloud.server()['uuid']
    api.migrate(cloud.ctx, vm, wait=True)
    api.confirm_resize(cloud.ctx, vm, wait=True)
    assert tracer.bindings() == {vm: 'host2'}
    api.delete_server(cloud.ctx, vm)
    assert tracer.bindings() == {}
    assert state.leaks() == []
