"""The ``flow`` commands: list, show, purge, and resume, roll back or
abandon a flow from the flow log.
"""
from cliff import lister
from cliff import show

from resize_flows import api
from resize_flows.cmd import common
from resize_flows import exception
from resize_flows import flows as rf_flows
from resize_flows import validation


#: Flows shown by `flow list` unless --limit says otherwise.
DEFAULT_FLOW_LIMIT = 50

FLOW_COLUMNS = ['flow_id', 'operation', 'status', 'state', 'instance_uuid',
                'migration_uuid', 'owner', 'job_uuid']


def _tasks_text(tasks):
    lines = []
    for t in tasks:
        line = '%-24s %-14s %-8s' % (t['name'], t['state'], t['intention'])
        if t['duration'] is not None:
            line += ' %7.2fs' % t['duration']
        if t['progress'] not in (None, 0.0, 1.0):
            line += ' %3d%%' % round(100 * t['progress'])
        if t['result'] is not None:
            line += '  -> %s' % t['result']
        lines.append(line)
        if t['failure']:
            lines.extend('    ' + f for f in t['failure'].splitlines())
    return '\n'.join(lines)


class FlowList(lister.Lister):
    """List flows, newest first, a page at a time."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--state', help='queued (posted on the jobboard, no conductor '
            'has started it yet), running, interrupted, finished, '
            '"rolled back", stuck (an undo step failed, or the conductors '
            'gave up on its job after [jobboard]/max_attempts: see its '
            'reason), abandoned (given up on by an operator: flow '
            'abandon), or a TaskFlow flow state (SUCCESS, REVERTED, ...).')
        parser.add_argument('--server', help='Only this server\'s flows.')
        names = list(rf_flows.OPERATIONS)
        parser.add_argument('--operation', help='%s or %s.' % (
            ', '.join(names[:-1]), names[-1]))
        parser.add_argument(
            '--limit', type=int, default=DEFAULT_FLOW_LIMIT,
            help='Show at most this many flows (default %d; 0: all). When '
                 'more match, the last line on stderr gives the --marker '
                 'of the next page.' % DEFAULT_FLOW_LIMIT)
        parser.add_argument(
            '--marker', help='Start after this flow (the last one of the '
                             'previous page).')
        return parser

    def take_action(self, parsed):
        if parsed.limit < 0:
            raise exception.InvalidInput(
                reason='--limit must be 0 or more, not %d' % parsed.limit)
        # One more is asked for, to tell whether there is a next page.
        validation.check_whole('--limit', parsed.limit,
                               maximum=validation.MAX_INT - 1)
        limit = parsed.limit or None
        flows = api.list_flows(
            common.caller_context(self.app), state=parsed.state,
            server=parsed.server,
            operation=parsed.operation, marker=parsed.marker,
            limit=None if limit is None else limit + 1)
        if limit is not None and len(flows) > limit:
            flows = flows[:limit]
            self.app.stderr.write(
                'More flows match: --marker %s for the next page\n'
                % flows[-1]['flow_id'])
        cols = ('Flow', 'Operation', 'Status', 'State', 'Server', 'Owner',
                'Created At', 'Updated At', 'Reason')
        rows = [(f['flow_id'], f['operation'], f['status'], f['state'],
                 f['instance_uuid'], f['owner'], f['created_at'],
                 f['updated_at'], f.get('reason'))
                for f in flows]
        return cols, rows


class FlowPurge(show.ShowOne):
    """Delete flows that ended (finished or rolled back) before a date.

    A flow that has not ended is kept, and so is a finished resize or
    migration still waiting for confirm or revert.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--before', required=True, metavar='<date>',
            help='UTC date or time, ISO 8601: 2026-11-01 or '
                 '2026-11-01T12:00:00.')
        parser.add_argument('--dry-run', action='store_true',
                            help='Count the flows, delete nothing.')
        return parser

    def take_action(self, parsed):
        purged = api.purge_flows(common.caller_context(self.app),
                                 parsed.before, dry_run=parsed.dry_run)
        return common.as_columns(purged, ['before', 'purged', 'dry_run'])


class FlowShow(show.ShowOne):
    """Show a flow, the plugins that built it, and each of its tasks
    (theirs included): state, intention, duration, result, and a
    failure's traceback."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('flow', metavar='<flow>')
        return parser

    def take_action(self, parsed):
        flow = api.show_flow(common.caller_context(self.app), parsed.flow)
        if parsed.formatter in ('table', 'value', 'shell'):
            flow['tasks'] = _tasks_text(flow['tasks'])
            flow['plugins'] = ', '.join(flow['plugins'])
            if flow['abandoned']:
                flow['abandoned'] = '%(abandoned_at)s by %(user_id)s: ' \
                    '%(reason)s' % flow['abandoned']
        return common.as_columns(flow, FLOW_COLUMNS + [
            'attempts', 'reason', 'abandoned', 'plugins', 'tasks'])


class FlowResume(common.MoveCommand):
    """Run an interrupted flow on from where it stopped.

    A queued flow (posted on the jobboard, not started yet) is refused: a
    conductor will start it; "flow rollback" cancels it. A flow whose
    operation the records never started (its process died between storing
    it and starting it) ends rolled back, changing nothing else.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('flow', metavar='<flow>')
        return parser

    def take_action(self, parsed):
        api.resume_flow(common.caller_context(self.app), parsed.flow,
                        listeners=common.progress_listeners(self, parsed))
        flow = api.show_flow(common.caller_context(self.app), parsed.flow)
        return common.as_columns(flow, FLOW_COLUMNS)


class FlowRollback(common.MoveCommand):
    """Undo every step of a flow that ran, newest first.

    A queued flow (posted on the jobboard, not started yet) is cancelled:
    the server is put back as it was before the request and the job is
    taken off the board. A flow whose operation the records never started
    ends rolled back, changing nothing else. Rolling back a finished move
    first records the undo, then claims the server: killed in between,
    "flow resume" or "flow rollback" of it finishes both.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('flow', metavar='<flow>')
        return parser

    def take_action(self, parsed):
        api.rollback_flow(common.caller_context(self.app), parsed.flow,
                          listeners=common.progress_listeners(self, parsed))
        flow = api.show_flow(common.caller_context(self.app), parsed.flow)
        return common.as_columns(flow, FLOW_COLUMNS)


class FlowAbandon(show.ShowOne):
    """Give up on a flow that neither resume nor rollback can finish.

    For a flow interrupted or stuck whose source host is gone for good.
    The flow ends "abandoned" (with the reason, who and when; its log is
    kept; resume and rollback refuse it from then on), its server goes to
    error with no task state (as Nova's reset-state), its migration to
    error, and the allocations on the hosts that do not answer are
    released. "audit" lists what is left on the hosts that answer.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('flow', metavar='<flow>')
        parser.add_argument('--reason', required=True,
                            help='Why (kept with the flow and in the '
                                 'server\'s instance action).')
        return parser

    def take_action(self, parsed):
        done = api.abandon_flow(common.caller_context(self.app),
                                parsed.flow, parsed.reason)
        done['released_on'] = ', '.join(done['released_on'])
        return common.as_columns(
            done, ['flow_id', 'status', 'reason', 'released_on'])
