"""Random sequences of operations, faults and recoveries (hypothesis).

The machine starts two servers on three test-driver hosts, then does any
of: resize, migrate, confirm, revert — each maybe with an injected fault
(an exception, or a simulated crash) in any task at any point — and
resume or roll back any flow left unfinished. After every step: a
request that was refused changed nothing, no flow is left running, and
whenever no flow is unfinished the cloud is consistent (state.leaks()).
"""
import shutil
import tempfile

import hypothesis
from hypothesis import stateful
from hypothesis import strategies as st

from resize_flows import api
from resize_flows import exception
from resize_flows import flows
from resize_flows.flows import confirm
from resize_flows.flows import resize
from resize_flows.flows import revert
from resize_flows import flowstatus
from resize_flows.persistence import db
from resize_flows.persistence import flowlog
from resize_flows.persistence import migration
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt

TASKS = sorted({a.name for f in (resize.get_resize_flow(),
                                 confirm.get_confirm_resize_flow(),
                                 revert.get_revert_resize_flow())
                for a in flows.iter_tasks(f)})
SERVERS = ('vm1', 'vm2')

fault_strategy = st.one_of(
    st.none(),
    st.tuples(st.sampled_from(TASKS), st.sampled_from(faults.POINTS),
              st.sampled_from(['raise', 'crash'])))


class CloudMachine(stateful.RuleBasedStateMachine):

    conf = None     # set by the test

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix='rf-stateful-')
        conf = self.conf
        conf.set_override('state_dir', self.dir)
        conf.set_override('connection',
                          'sqlite:///%s/rf.sqlite' % self.dir,
                          group='database')
        virt.reset()
        faults.clear()
        migration.db_sync()
        ctx = api.get_admin_context()
        for name in ('host1', 'host2', 'host3'):
            api.create_host(ctx, name, 4, 1024, 10)
        api.create_flavor(ctx, 'small', 1, 64, 1)
        api.create_flavor(ctx, 'big', 2, 128, 2)
        api.create_server(ctx, 'vm1', 'small', 'host1')
        api.create_server(ctx, 'vm2', 'small', 'host2', power_on=False)

    def teardown(self):
        faults.clear()
        virt.reset()
        flowlog.reset()
        db.dispose_all()
        self.conf.clear_override('connection', group='database')
        shutil.rmtree(self.dir, ignore_errors=True)

    def _attempt(self, call, fault):
        """Run ``call``; a refusal must change nothing."""
        before = state.capture()
        flows_before = len(flowstatus.list_flows())
        if fault is not None:
            task, point, kind = fault
            faults.inject(task, point, exc_class=(
                faults.SimulatedCrash if kind == 'crash' else None))
        try:
            call(api.get_admin_context())
            hypothesis.event('operation done')
        except faults.SimulatedCrash:
            hypothesis.event('crashed')
        except faults.InjectedFault:
            hypothesis.event('failed and undone')
        except exception.ResizeFlowsException as e:
            if len(flowstatus.list_flows()) == flows_before:
                # Refused before anything started.
                hypothesis.event('refused')
                assert state.capture() == before, e
            else:
                hypothesis.event('failed: %s' % type(e).__name__)
        finally:
            faults.clear()

    @stateful.rule(server=st.sampled_from(SERVERS),
                   flavor=st.sampled_from(['small', 'big']),
                   fault=fault_strategy)
    def resize(self, server, flavor, fault):
        self._attempt(
            lambda c: api.resize(c, server, flavor, wait=True), fault)

    @stateful.rule(server=st.sampled_from(SERVERS), fault=fault_strategy)
    def migrate(self, server, fault):
        self._attempt(
            lambda c: api.migrate(c, server, wait=True), fault)

    @stateful.rule(server=st.sampled_from(SERVERS), fault=fault_strategy)
    def confirm(self, server, fault):
        self._attempt(
            lambda c: api.confirm_resize(c, server, wait=True), fault)

    @stateful.rule(server=st.sampled_from(SERVERS), fault=fault_strategy)
    def revert(self, server, fault):
        self._attempt(
            lambda c: api.revert_resize(c, server, wait=True), fault)

    @stateful.rule(data=st.data(), how=st.sampled_from(['resume',
                                                        'rollback']))
    def recover(self, data, how):
        unfinished = [f['flow_id'] for f in flowstatus.list_flows()
                      if f['status'] in (flowstatus.INTERRUPTED,
                                         flowstatus.STUCK)]
        if not unfinished:
            return
        flow_id = data.draw(st.sampled_from(unfinished))
        hypothesis.event('recovered by ' + how)
        try:
            getattr(api, how + '_flow')(api.get_admin_context(), flow_id)
        except exception.FlowStateConflict:
            hypothesis.event('recovery refused, the other way taken')
            # Refused (say, rollback past a point of no return, or resume
            # of a flow whose undo failed): the other way must work.
            other = 'rollback' if how == 'resume' else 'resume'
            getattr(api, other + '_flow')(api.get_admin_context(), flow_id)

    @stateful.invariant()
    def consistent(self):
        flows = flowstatus.list_flows()
        assert not [f for f in flows if f['status'] == flowstatus.RUNNING]
        if all(f['status'] in (flowstatus.FINISHED, flowstatus.ROLLED_BACK)
               for f in flows):
            assert state.leaks() == []
            for inst in repository.instance_list():
                assert inst['task_state'] is None


def test_random_operations_faults_and_recoveries(conf):
    CloudMachine.conf = conf
    stateful.run_state_machine_as_test(
        CloudMachine, settings=hypothesis.settings(
            max_examples=25, stateful_step_count=12, deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            database=None))
