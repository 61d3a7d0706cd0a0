"""The ``resize-flows`` command: python-openstackclient's shape, thin.

Built on cliff, as openstackclient is: multi-word commands, ``-f json|table
|value|yaml|csv`` and ``-c COLUMN`` on every list and show, ``--debug`` for
tracebacks. Each command parses, calls :mod:`resize_flows.api` (or the
persistence layer for ``db``), and formats; errors print as one line and
exit non-zero.
"""
import logging
import os
import sys
import threading
import time

from cliff import app
from cliff import command as command_base
from cliff import commandmanager
from cliff import lister
from cliff import show
from taskflow.listeners import base as listener_base
from taskflow import states as tf_states

from resize_flows import api
from resize_flows import conf as rf_conf
from resize_flows.conf import CONF
from resize_flows import exception
from resize_flows.persistence import migration as db_migration
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import states
from resize_flows.testing import faults
from resize_flows import validation
from resize_flows import virt

COMMANDS = {}


def command(name):
    def register(cls):
        COMMANDS[name] = cls
        return cls
    return register


#: The global options of the command being run (set by the application).
_OPTIONS = None


def _ctx():
    """A request context for this command: who the global options (or
    OS_USER_ID, OS_PROJECT_ID, OS_ROLES) say; an admin by default."""
    opts = _OPTIONS
    if opts is None:
        return api.get_admin_context()
    roles = tuple(r.strip() for r in (opts.os_roles or '').split(',')
                  if r.strip())
    return api.RequestContext(user_id=opts.os_user_id,
                              project_id=opts.os_project_id, roles=roles)


def _show(record, columns=None):
    columns = columns or sorted(record)
    return columns, [record[c] for c in columns]


def _power_name(value):
    return states.POWER_STATE_NAMES.get(value, str(value))


class ProgressListener(listener_base.Listener):
    """Prints each task's transitions to a stream (stderr) while a flow
    runs, and the progress of a task that reports it (CopyDisk) as it goes:
    on a terminal a bar redrawn in place (``\\r``) until the task's line
    replaces it, elsewhere one line per 10 % crossed.

    Task progress is not on the engine's notifier: each task has its own
    (TaskFlow's ``update_progress`` event), so the listener registers there
    too. The engine is serial: every callback comes on its one thread.
    """

    #: taskflow.task.EVENT_UPDATE_PROGRESS
    PROGRESS_EVENT = 'update_progress'
    BAR_WIDTH = 30

    def __init__(self, engine, stream):
        super().__init__(engine, task_listen_for=(
            tf_states.RUNNING, tf_states.SUCCESS, tf_states.FAILURE,
            tf_states.REVERTING, tf_states.REVERTED,
            tf_states.REVERT_FAILURE))
        self._stream = stream
        self._started = {}
        self._progress_callbacks = []
        self._shown = {}            # running task -> last percent shown
        self._bar = 0               # width of the bar on screen, 0: none
        try:
            self._tty = bool(stream.isatty())
        except (AttributeError, ValueError, OSError):
            self._tty = False

    def register(self):
        super().register()
        if self._progress_callbacks:
            return
        try:
            self._engine.compile()
            graph = self._engine.compilation.execution_graph
        except AttributeError:      # an engine without a compilation
            return
        for atom, data in graph.nodes(data=True):
            if (data.get('kind') == 'task'
                    and atom.notifier.can_be_registered(self.PROGRESS_EVENT)):
                callback = self._progress_callback(atom.name)
                atom.notifier.register(self.PROGRESS_EVENT, callback)
                self._progress_callbacks.append((atom, callback))

    def deregister(self):
        while self._progress_callbacks:
            atom, callback = self._progress_callbacks.pop()
            atom.notifier.deregister(self.PROGRESS_EVENT, callback)
        super().deregister()

    def _progress_callback(self, name):
        def callback(_event_type, details):
            self._on_progress(name, details.get('progress'))
        return callback

    def _on_progress(self, name, fraction):
        last = self._shown.get(name)
        if fraction is None or last is None or name not in self._started:
            return                  # not running: the engine's own 0 or 1
        percent = int(100 * min(max(fraction, 0.0), 1.0))
        if self._tty:
            if percent == last:
                return
            filled = self.BAR_WIDTH * percent // 100
            text = '  %-24s [%s%s] %3d%%' % (
                name, '#' * filled, '.' * (self.BAR_WIDTH - filled), percent)
            self._stream.write('\r' + text.ljust(self._bar))
            self._bar = len(text)
        else:
            if percent >= 100 or percent // 10 <= last // 10:
                return
            self._stream.write('  %-24s %3d%%\n' % (name, percent))
        self._shown[name] = percent
        self._stream.flush()

    def _task_receiver(self, state, details):
        name = details['task_name']
        now = time.monotonic()
        if state in (tf_states.RUNNING, tf_states.REVERTING):
            self._started[name] = now
            self._shown[name] = 0
            return
        took = now - self._started.pop(name, now)
        self._shown.pop(name, None)
        if self._bar:
            self._stream.write('\r%s\r' % (' ' * self._bar))
            self._bar = 0
        self._stream.write('  %-24s %-15s %6.2fs\n' % (name, state, took))
        self._stream.flush()


def _quiet(cmd, parsed):
    """Whether the tasks are not to be printed: the command's own
    ``--quiet`` or cliff's global ``-q``/``--quiet``, which argparse gives
    the application wherever it is on the line (verbose_level 0)."""
    if getattr(parsed, 'quiet', False):
        return True
    options = getattr(cmd.app, 'options', None)
    return getattr(options, 'verbose_level', 1) == 0


def _with_progress(cmd, parsed):
    if _quiet(cmd, parsed):
        return ()
    return (lambda engine: ProgressListener(engine, cmd.app.stderr),)


def _move_result(op, started=False):
    """What a move command prints: with ``started``, the migration as
    the operation started it (--no-wait), else as it is now."""
    mig = (started and getattr(op, 'started_migration', None)
           or op.migration)
    record = {
        'migration': mig['uuid'], 'type': mig['migration_type'],
        'status': mig['status'], 'source': mig['source_compute'],
        'dest': mig['dest_compute'], 'flow': op.flow_id,
        'flow_state': 'RUNNING' if started else (op.flow_state
                                                 or 'RUNNING'),
        'request_id': op.request_id,
    }
    return _show(record, ['migration', 'type', 'status', 'source', 'dest',
                          'flow', 'flow_state', 'request_id'])


class _MoveCommand(show.ShowOne):
    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--quiet', '-q', action='store_true',
                            help='Do not print the tasks as they run.')
        return parser


def follow(flow_id, stream, interval=None, quiet=False):
    """Follow a flow that another process runs (a conductor) through the
    flow log until it ends: each task's line as it finishes, as
    ProgressListener prints them, and a running task's reported progress
    every 10 %. Returns the flow as :func:`api.show_flow` gives it."""
    interval = interval or CONF.jobboard.wait_poll_interval
    printed = {}
    shown = {}
    while True:
        flow = api.show_flow(_ctx(), flow_id)
        for t in flow['tasks']:
            key = (t['state'], t['intention'])
            if t['state'] == tf_states.RUNNING and t['progress']:
                percent = int(100 * t['progress'])
                if percent // 10 > shown.get(t['name'], 0) // 10 \
                        and percent < 100 and not quiet:
                    stream.write('  %-24s %3d%%\n' % (t['name'], percent))
                    stream.flush()
                    shown[t['name']] = percent
            if t['state'] in (tf_states.PENDING, tf_states.RUNNING,
                              tf_states.REVERTING) or \
                    printed.get(t['name']) == key:
                continue
            printed[t['name']] = key
            if not quiet:
                took = ('%6.2fs' % t['duration']
                        if t['duration'] is not None else '')
                stream.write('  %-24s %-15s %s\n' % (t['name'], t['state'],
                                                     took))
                stream.flush()
        # Queued: no conductor has claimed its job yet; interrupted: one
        # will resume it.
        if flow['status'] not in ('queued', 'running', 'interrupted'):
            return flow
        time.sleep(interval)


class _OperationCommand(_MoveCommand):
    """A move: waits for its flow's end by default, showing its tasks;
    with the jobboard enabled, posts it and returns unless --wait."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--no-wait', dest='wait', action='store_false', default=None,
            help='Print the migration, flow and request ids as soon as the '
                 'operation has started, without its tasks. Without a '
                 'jobboard the flow runs in this process until it ends, '
                 'so the command exits then; interrupted, the flow is '
                 'left to "flow resume" or "flow rollback". With '
                 '[jobboard]/enabled this is the default: a conductor '
                 'runs the flow.')
        parser.add_argument(
            '--wait', dest='wait', action='store_true', default=None,
            help='Wait for the flow\'s end, printing its tasks as they '
                 'finish (the default without a jobboard; with one, the '
                 'job is followed in the flow log while a conductor runs '
                 'it).')
        return parser

    def _run(self, parsed, call, *args, **kwargs):
        wait = parsed.wait
        if wait is None:
            wait = not CONF.jobboard.enabled
        if CONF.jobboard.enabled:
            op = call(_ctx(), *args, wait=False, **kwargs)
            if wait and isinstance(op, api.PostedOperation):
                follow(op.flow_id, self.app.stderr,
                       quiet=_quiet(self, parsed))
                op.wait()
            elif wait:
                op.wait()
            return _move_result(op)
        listeners = _with_progress(self, parsed) if wait else ()
        op = call(_ctx(), *args, wait=wait, listeners=listeners, **kwargs)
        return _move_result(op, started=not wait)


# -- db ----------------------------------------------------------------------

@command('db sync')
class DbSync(show.ShowOne):
    """Create or upgrade the database schema (ours and the flow log's)."""

    def take_action(self, parsed):
        db_migration.db_sync()
        return _show(db_migration.db_version(),
                     ['resize_flows', 'head'])


@command('db version')
class DbVersion(show.ShowOne):
    """Show the schema revision of the database and of this code."""

    def take_action(self, parsed):
        return _show(db_migration.db_version(),
                     ['resize_flows', 'head'])


# -- hosts -------------------------------------------------------------------

@command('host create')
class HostCreate(show.ShowOne):
    """Register a compute host (by default a local simulated one)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        parser.add_argument('--vcpus', type=int, required=True)
        parser.add_argument('--memory-mb', type=int, required=True)
        parser.add_argument('--disk-gb', type=int, required=True)
        parser.add_argument(
            '--uri', help='libvirt URI of an existing hypervisor. Without '
            'it, a local host is set up under $state_dir/hosts/<name> '
            '([libvirt]/local_hypervisor says which kind).')
        parser.add_argument('--instances-path',
                            help='Instances directory (with --uri).')
        parser.add_argument(
            '--ssh', metavar='[USER@]HOST[:PORT]',
            help='The instances path is on the machine at this ssh address '
            '(with --uri and --instances-path): its files are handled '
            'there over ssh and disks are copied to and from it by rsync '
            '(options in [remote]). Without it, the instances path is on '
            'the machine that runs the flows.')
        return parser

    def take_action(self, parsed):
        host = api.create_host(_ctx(), parsed.name, parsed.vcpus,
                               parsed.memory_mb, parsed.disk_gb,
                               uri=parsed.uri,
                               instances_path=parsed.instances_path,
                               ssh=parsed.ssh)
        return _show(host, ['name', 'uri', 'instances_path', 'ssh', 'vcpus',
                            'memory_mb', 'disk_gb', 'enabled'])


@command('host delete')
class HostDelete(command_base.Command):
    """Remove a host that holds no server (a local one is stopped)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        return parser

    def take_action(self, parsed):
        api.delete_host(_ctx(), parsed.name)


@command('host list')
class HostList(lister.Lister):
    """List compute hosts with their used and total capacity."""

    def take_action(self, parsed):
        cols = ('Name', 'Enabled', 'vCPUs used/total', 'RAM MB used/total',
                'Disk GB used/total', 'URI', 'Files on')
        rows = [(h['name'], h['enabled'],
                 '%d/%d' % (h['used']['vcpus'], h['vcpus']),
                 '%d/%d' % (h['used']['memory_mb'], h['memory_mb']),
                 '%d/%d' % (h['used']['disk_gb'], h['disk_gb']), h['uri'],
                 h.get('ssh') or 'this machine')
                for h in api.list_hosts(_ctx())]
        return cols, rows


# -- flavors -----------------------------------------------------------------

@command('flavor create')
class FlavorCreate(show.ShowOne):
    """Create a flavor."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        parser.add_argument('--vcpus', type=int, required=True)
        parser.add_argument('--ram', type=int, required=True,
                            help='Memory in MB.')
        parser.add_argument('--disk', type=int, required=True,
                            help='Root disk in GB.')
        parser.add_argument('--private', action='store_true',
                            help='Only the projects given may use it.')
        parser.add_argument('--project', action='append', default=[],
                            help='A project allowed to use a private '
                                 'flavor (repeatable).')
        return parser

    def take_action(self, parsed):
        flavor = api.create_flavor(
            _ctx(), parsed.name, parsed.vcpus, parsed.ram, parsed.disk,
            is_public=not parsed.private, projects=parsed.project)
        flavor['projects'] = ','.join(flavor['projects'])
        return _show(flavor, ['id', 'name', 'vcpus', 'memory_mb', 'root_gb',
                              'is_public', 'projects'])


@command('flavor list')
class FlavorList(lister.Lister):
    """List flavors."""

    def take_action(self, parsed):
        cols = ('ID', 'Name', 'vCPUs', 'RAM', 'Disk', 'Is Public')
        return cols, [(f['id'], f['name'], f['vcpus'], f['memory_mb'],
                       f['root_gb'], f['is_public'])
                      for f in api.list_flavors(_ctx())]


# -- servers -----------------------------------------------------------------

SERVER_COLUMNS = ['uuid', 'name', 'host', 'flavor', 'vm_state', 'task_state',
                  'power_state', 'old_flavor', 'new_flavor', 'locked',
                  'project_id']


def _server_record(inst):
    names = {}

    def flavor_name(flavor_id):
        if flavor_id is None:
            return None
        if flavor_id not in names:
            names[flavor_id] = repository.flavor_get(flavor_id)['name']
        return names[flavor_id]

    out = dict(inst)
    out['flavor'] = flavor_name(inst['flavor_id'])
    out['old_flavor'] = flavor_name(inst['old_flavor_id'])
    out['new_flavor'] = flavor_name(inst['new_flavor_id'])
    out['power_state'] = _power_name(inst['power_state'])
    return out


@command('server create')
class ServerCreate(show.ShowOne):
    """Boot a server: a blank qcow2 disk and a running guest."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        parser.add_argument('--flavor', required=True)
        parser.add_argument(
            '--host', help='Boot it on this host (admin: rule '
            'os_compute_api:servers:create:forced_host). Default: the '
            'scheduler chooses.')
        parser.add_argument('--stopped', action='store_true',
                            help='Define the guest but leave it off.')
        return parser

    def take_action(self, parsed):
        inst = api.create_server(_ctx(), parsed.name, parsed.flavor,
                                 parsed.host, power_on=not parsed.stopped)
        return _show(_server_record(inst), SERVER_COLUMNS)


@command('server delete')
class ServerDelete(command_base.Command):
    """Delete a server: its guest, disk and records (a RESIZED server is
    confirmed first; refused while an operation on it is unfinished)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        api.delete_server(_ctx(), parsed.server)


@command('server list')
class ServerList(lister.Lister):
    """List servers."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Only servers on this host.')
        return parser

    def take_action(self, parsed):
        cols = ('ID', 'Name', 'Host', 'Flavor', 'Status', 'Task State',
                'Power State')
        rows = []
        for inst in api.list_servers(_ctx(), host=parsed.host):
            rec = _server_record(inst)
            rows.append((rec['uuid'], rec['name'], rec['host'],
                         rec['flavor'], rec['vm_state'], rec['task_state'],
                         rec['power_state']))
        return cols, rows


@command('server show')
class ServerShow(show.ShowOne):
    """Show a server, and what its host's hypervisor says of it."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Name or uuid.')
        return parser

    def take_action(self, parsed):
        ctx = _ctx()
        rec = _server_record(api.get_server(ctx, parsed.server))
        try:
            info = virt.get_driver(repository.host_get(rec['host'])) \
                .get_info(rec['uuid'])
            rec['hypervisor'] = '%s, %d vCPU, %d MB' % (
                _power_name(info.power_state), info.vcpus, info.memory_mb)
        except exception.ResizeFlowsException as e:
            # Why, only to an admin: it names hosts and URIs.
            rec['hypervisor'] = ('unknown: %s' % e if ctx.is_admin
                                 else 'unknown')
        return _show(rec, SERVER_COLUMNS + ['hypervisor'])


@command('server resize')
class ServerResize(_OperationCommand):
    """Resize a server to another flavor; it waits, RESIZED, for confirm or
    revert."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        parser.add_argument('--flavor', required=True)
        return parser

    def take_action(self, parsed):
        return self._run(parsed, api.resize, parsed.server, parsed.flavor)


@command('server resize confirm')
class ServerResizeConfirm(_OperationCommand):
    """Confirm a resize or migration of a server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        return self._run(parsed, api.confirm_resize, parsed.server)


@command('server resize revert')
class ServerResizeRevert(_OperationCommand):
    """Revert a resize or migration of a server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        return self._run(parsed, api.revert_resize, parsed.server)


@command('server migrate')
class ServerMigrate(_OperationCommand):
    """Cold-migrate a server to another host, keeping its flavor."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        parser.add_argument('--host', help='Target host (default: the '
                                           'scheduler chooses).')
        return parser

    def take_action(self, parsed):
        return self._run(parsed, api.migrate, parsed.server,
                         host=parsed.host)


@command('server lock')
class ServerLock(command_base.Command):
    """Lock a server: only an admin may then resize, migrate, confirm,
    revert or delete it."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        api.lock_server(_ctx(), parsed.server)


@command('server unlock')
class ServerUnlock(ServerLock):
    """Unlock a server."""

    def take_action(self, parsed):
        api.unlock_server(_ctx(), parsed.server)


@command('confirm-expired')
class ConfirmExpired(lister.Lister):
    """Confirm every resize or migration that has waited, finished, longer
    than [compute]/resize_confirm_window seconds (for cron; 0 disables)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--window', type=int, default=None, metavar='SECONDS',
            help='Use this window instead of '
                 '[compute]/resize_confirm_window.')
        return parser

    def take_action(self, parsed):
        if parsed.window is not None and parsed.window < 0:
            raise exception.InvalidInput(
                reason='--window must be >= 0, not %d' % parsed.window)
        outcome = api.confirm_expired(_ctx(), window=parsed.window)
        return ('Server', 'Result'), sorted(outcome.items())


@command('server migration list')
class ServerMigrationList(lister.Lister):
    """List migrations, of one server or of all."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--server', help='Only this server\'s.')
        return parser

    def take_action(self, parsed):
        cols = ('UUID', 'Server', 'Type', 'Source', 'Dest', 'Status',
                'Flow', 'Created At', 'Updated At')
        rows = [(m['uuid'], m['instance_uuid'], m['migration_type'],
                 m['source_compute'], m['dest_compute'], m['status'],
                 m['flow_id'], m['created_at'], m['updated_at'])
                for m in api.list_migrations(_ctx(), parsed.server)]
        return cols, rows


@command('server event list')
class ServerEventList(lister.Lister):
    """List a server's actions and their events (one row per step)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        cols = ('Request ID', 'Action', 'Event', 'Result', 'Start Time',
                'Finish Time')
        rows = []
        for act in api.list_actions(_ctx(), parsed.server):
            rows.append((act['request_id'], act['action'], '', act['message'],
                         act['start_time'], act['finish_time']))
            for ev in act['events']:
                rows.append(('', '', ev['event'], ev['result'],
                             ev['start_time'], ev['finish_time']))
        return cols, rows


# -- flows -------------------------------------------------------------------

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


@command('flow list')
class FlowList(lister.Lister):
    """List flows, newest first, a page at a time."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument(
            '--state', help='queued (posted on the jobboard, no conductor '
            'has started it yet), running, interrupted, finished, '
            '"rolled back", stuck, or a TaskFlow flow state (SUCCESS, '
            'REVERTED, ...).')
        parser.add_argument('--server', help='Only this server\'s flows.')
        parser.add_argument('--operation',
                            help='resize, migrate, confirm_resize or '
                                 'revert_resize.')
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
            _ctx(), state=parsed.state, server=parsed.server,
            operation=parsed.operation, marker=parsed.marker,
            limit=None if limit is None else limit + 1)
        if limit is not None and len(flows) > limit:
            flows = flows[:limit]
            self.app.stderr.write(
                'More flows match: --marker %s for the next page\n'
                % flows[-1]['flow_id'])
        cols = ('Flow', 'Operation', 'Status', 'State', 'Server', 'Owner',
                'Created At', 'Updated At')
        rows = [(f['flow_id'], f['operation'], f['status'], f['state'],
                 f['instance_uuid'], f['owner'], f['created_at'],
                 f['updated_at'])
                for f in flows]
        return cols, rows


@command('flow purge')
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
        purged = api.purge_flows(_ctx(), parsed.before,
                                 dry_run=parsed.dry_run)
        return _show(purged, ['before', 'purged', 'dry_run'])


@command('flow show')
class FlowShow(show.ShowOne):
    """Show a flow and each of its tasks: state, intention, duration,
    result, and a failure's traceback."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('flow', metavar='<flow>')
        return parser

    def take_action(self, parsed):
        flow = api.show_flow(_ctx(), parsed.flow)
        if parsed.formatter in ('table', 'value', 'shell'):
            flow['tasks'] = _tasks_text(flow['tasks'])
        return _show(flow, FLOW_COLUMNS + ['tasks'])


@command('flow resume')
class FlowResume(_MoveCommand):
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
        api.resume_flow(_ctx(), parsed.flow,
                        listeners=_with_progress(self, parsed))
        flow = api.show_flow(_ctx(), parsed.flow)
        return _show(flow, FLOW_COLUMNS)


@command('flow rollback')
class FlowRollback(_MoveCommand):
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
        api.rollback_flow(_ctx(), parsed.flow,
                          listeners=_with_progress(self, parsed))
        flow = api.show_flow(_ctx(), parsed.flow)
        return _show(flow, FLOW_COLUMNS)


# -- jobboard and conductors ---------------------------------------------------

@command('conductor')
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
        import signal

        from resize_flows import conductor as rf_conductor
        from resize_flows import leases
        from resize_flows import jobboard
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
        self.app.stderr.write('conductor %s: claiming jobs on %s (%s)\n' % (
            name, CONF.jobboard.board_name, jobboard.mask_url()))
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


@command('conductor list')
class ConductorList(lister.Lister):
    """List the live conductors of the jobboard and the flows they run
    (admin: rule resize_flows:conductors:list)."""

    def take_action(self, parsed):
        rows = [(c['name'], c['host'], c['pid'], c['started_at'],
                 c['seen_at'], ' '.join(c['flows']))
                for c in api.list_conductors(_ctx())]
        return ('Name', 'Host', 'PID', 'Started At', 'Seen At',
                'Flows'), rows


@command('job list')
class JobList(lister.Lister):
    """List the jobs on the jobboard: who holds which, since when (admin:
    rule resize_flows:jobs:list)."""

    def take_action(self, parsed):
        rows = [(j['job'], j['operation'], j['instance_uuid'], j['flow_id'],
                 j['state'], j['owner'], j['since'], j['posted_at'])
                for j in api.list_jobs(_ctx())]
        return ('Job', 'Operation', 'Server', 'Flow', 'State', 'Owner',
                'Since', 'Posted At'), rows


# -- the application ---------------------------------------------------------

class _HideDetails(logging.Filter):
    def filter(self, record):
        return record.name != api.DETAILS_LOG.name


class ResizeFlowsApp(app.App):

    def __init__(self, stdout=None, stderr=None):
        manager = commandmanager.CommandManager('resize_flows.cli')
        for name, cls in COMMANDS.items():
            manager.add_command(name, cls)
        super().__init__(
            description='Crash-safe resize, cold migrate, confirm and '
                        'revert for libvirt hosts.',
            version='0.1.0', command_manager=manager, deferred_help=True,
            stdout=stdout, stderr=stderr)

    def build_option_parser(self, description, version, argparse_kwargs=None):
        parser = super().build_option_parser(description, version,
                                              argparse_kwargs)
        parser.add_argument(
            '--config-file', action='append', default=[],
            metavar='PATH',
            help='Configuration file (repeatable; later ones win). Default: '
                 'the usual oslo.config places, e.g. '
                 '/etc/resize-flows/resize-flows.conf.')
        parser.add_argument(
            '--config-dir', action='append', default=[], metavar='DIR',
            help='Directory of *.conf files read after --config-file.')
        parser.add_argument(
            '--os-user-id', metavar='USER',
            default=os.environ.get('OS_USER_ID') or 'admin',
            help='Who asks (env OS_USER_ID; default: admin).')
        parser.add_argument(
            '--os-project-id', metavar='PROJECT',
            default=os.environ.get('OS_PROJECT_ID') or 'admin',
            help='The project asking (env OS_PROJECT_ID; default: admin). '
                 'Servers are created in it; a non-admin sees only its '
                 'servers.')
        parser.add_argument(
            '--os-roles', metavar='ROLE[,ROLE]',
            default=os.environ.get('OS_ROLES', 'admin'),
            help='Comma-separated roles of the caller, checked by the '
                 'access rules (env OS_ROLES; default: admin). "admin" (in '
                 'any case; the rule context_is_admin) is a cloud '
                 'administrator; e.g. "member" is not.')
        return parser

    def configure_logging(self):
        super().configure_logging()
        if self.options.verbose_level < 2:
            # What a caller who is not an admin is told only in general
            # goes to the log (--log-file), not to that caller's terminal.
            for handler in logging.getLogger('').handlers:
                if getattr(handler, 'stream', None) is self.stderr:
                    handler.addFilter(_HideDetails())
        if self.options.verbose_level < 2:
            # alembic tells every step of a schema upgrade at INFO.
            logging.getLogger('alembic').setLevel(logging.WARNING)
            # The log notifier's lines would interleave with the tasks'.
            logging.getLogger('resize_flows.notifications').setLevel(
                logging.WARNING)

    def initialize_app(self, argv):
        global _OPTIONS
        _OPTIONS = self.options
        rf_conf.register_opts(CONF)
        args = []
        for path in self.options.config_file:
            args += ['--config-file', path]
        for path in self.options.config_dir:
            args += ['--config-dir', path]
        CONF(args, project='resize-flows')
        # Every option read once: a bad value is one line now, not an
        # error in the middle of a flow.
        rf_conf.validate(CONF)
        faults.configure(CONF)

    def clean_up(self, cmd, result, err):
        # A --no-wait operation printed its ids; its flow runs on in this
        # process: the command ends with it.
        api.wait_all()

    def prepare_to_run_command(self, cmd):
        if (isinstance(cmd, _MoveCommand) and CONF.flows.resume_interrupted
                and policy.check(_ctx(), policy.FLOW_RESUME)):
            for flow_id, outcome in api.resume_interrupted(_ctx()).items():
                self.stderr.write('resumed interrupted flow %s: %s\n' % (
                    flow_id, outcome))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ['--help']
    try:
        return ResizeFlowsApp().run(argv)
    finally:
        # A --no-wait operation's flow runs on in this process: let it end
        # before the hypervisor connections close.
        api.wait_all()
        virt.reset()


if __name__ == '__main__':
    sys.exit(main())
