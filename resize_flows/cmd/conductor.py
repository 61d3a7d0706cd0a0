"""The jobboard's commands: run a ``conductor``, list the live
conductors (``conductor list``) and the jobs (``job list``).
"""
import signal
import threading

from cliff import command as command_base
from cliff import lister

from resize_flows import api
from resize_flows.cmd import common
from resize_flows.conf import CONF
from resize_flows import conductor as rf_conductor
from resize_flows import exception
from resize_flows import jobboard
from resize_flows import leases


class ConductorRun(command_base.Command):
    """Run a conductor: claim jobs from the jobboard and run their flows.

    Runs until SIGTERM or SIGINT: then it claims nothing more, lets the
    running task end, suspends its flow there and gives the job back for
    another conductor to finish. It extends its claims every quarter of
    [jobboard]/claim_expiry; killed, its claims run out and another
    conductor resumes its flows from the flow log. With
    [compute]/resize_confirm_window set it also confirms expired moves.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--name', help='Name to claim under (default: '
                           '[jobboard]/conductor_name, or the host name); '
                           'the process id and a random suffix follow it.')
        parser.add_argument(
            '--max-jobs', type=int, default=None,
            help='Stop after running this many jobs (for tests and '
                 'benchmarks; default: run until stopped).')
        parser.add_argument(
            '--simultaneous-jobs', type=int, default=None, metavar='N',
            help='Run up to N jobs at once, each in a thread of its own '
                 '(default: [jobboard]/simultaneous_jobs, 1).')
        return parser

    def take_action(self, parsed):
        if parsed.name:
            CONF.set_override('conductor_name', parsed.name, 'jobboard')
        if parsed.simultaneous_jobs is not None:
            if parsed.simultaneous_jobs < 1:
                raise exception.InvalidInput(
                    reason='--simultaneous-jobs must be >= 1')
            CONF.set_override('simultaneous_jobs', parsed.simultaneous_jobs,
                              'jobboard')
        name = jobboard.conductor_name()
        # Its leases carry its name: "flow list" shows who runs what.
        leases.set_owner(name)
        # Which board, before connecting to it; its password masked.
        board, url = CONF.jobboard.board_name, jobboard.mask_url()
        self.app.stderr.write('conductor %s: claiming jobs on %s (%s)\n' % (
            name, board, url))
        self.app.stderr.flush()
        conductor = rf_conductor.Conductor(name=name)

        def stop(signum, _frame):
            # Not here: the handler interrupts the main thread, which may
            # be inside the flow's engine holding its storage lock.
            self.app.stderr.write('conductor %s: signal %d, stopping\n'
                                  % (name, signum))
            threading.Thread(target=conductor.stop, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        conductor.run(max_dispatches=parsed.max_jobs)
        return 0


class ConductorList(lister.Lister):
    """List the live conductors of the jobboard and the flows they run
    (admin: rule resize_flows:conductors:list)."""

    def take_action(self, parsed):
        rows = [(c['name'], c['host'], c['pid'], c['started_at'],
                 c['seen_at'], ' '.join(c['flows']))
                for c in api.list_conductors(common.caller_context(self.app))]
        return ('Name', 'Host', 'PID', 'Started At', 'Seen At',
                'Flows'), rows


class JobList(lister.Lister):
    """List the jobs on the jobboard: who holds which, since when, how
    many times conductors claimed each; and those in the board's trash
    (state TRASHED: the conductors gave up on them after
    [jobboard]/max_attempts; see flow show) (admin: rule
    resize_flows:jobs:list)."""

    def take_action(self, parsed):
        rows = [(j['job'], j['operation'], j['instance_uuid'], j['flow_id'],
                 j['state'], j['attempts'], j['owner'], j['since'],
                 j['posted_at'])
                for j in api.list_jobs(common.caller_context(self.app))]
        return ('Job', 'Operation', 'Server', 'Flow', 'State', 'Attempts',
                'Owner', 'Since', 'Posted At'), rows
