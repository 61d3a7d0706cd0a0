"""The ``server`` commands: create, list, show, delete, lock, console
log; resize, migrate, confirm and revert (flows); its migrations and
events; abort a move in progress; and ``confirm-expired``.
"""
from cliff import command as command_base
from cliff import lister
from cliff import show

from resize_flows import api
from resize_flows.cmd import common
from resize_flows import exception
from resize_flows import flows as rf_flows
from resize_flows import states


SERVER_COLUMNS = ['uuid', 'name', 'host', 'flavor', 'image', 'config_drive',
                  'vm_state', 'task_state', 'power_state', 'old_flavor',
                  'new_flavor', 'locked', 'project_id']


def _power_name(value):
    return states.POWER_STATE_NAMES.get(value, str(value))


def _server_records(ctx, servers, images=False):
    """``servers`` as the commands print them: flavors and the power
    state by name; with ``images`` the image's name too (its uuid when
    the caller may not see the image)."""
    names = api.flavor_names(ctx, servers)
    records = []
    for inst in servers:
        out = dict(inst)
        for column in ('flavor', 'old_flavor', 'new_flavor'):
            flavor_id = inst[column + '_id']
            out[column] = None if flavor_id is None else names[flavor_id]
        out['power_state'] = _power_name(inst['power_state'])
        if images and inst['image_id'] is not None:
            try:
                out['image'] = api.get_image(ctx, inst['image_id'])['name']
            except exception.ResizeFlowsException:
                out['image'] = inst['image_id']
        elif images:
            out['image'] = None
        records.append(out)
    return records


class ServerCreate(show.ShowOne):
    """Boot a server: its root disk (blank, or an overlay on an image),
    its flavor's ephemeral and swap disks, a config drive if asked, and a
    running guest."""

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
        parser.add_argument(
            '--image', metavar='IMAGE',
            help='Name or uuid of the image its root disk is made from '
                 '(an overlay on it; the flavor\'s root disk must hold the '
                 'image). Default: a blank root disk.')
        parser.add_argument(
            '--config-drive', action='store_true',
            help='Give it a config drive (disk.config, ISO 9660 labelled '
                 'config-2; needs genisoimage).')
        return parser

    def take_action(self, parsed):
        ctx = common.caller_context(self.app)
        inst = api.create_server(ctx, parsed.name, parsed.flavor,
                                 parsed.host, power_on=not parsed.stopped,
                                 image=parsed.image,
                                 config_drive=parsed.config_drive)
        record, = _server_records(ctx, [inst], images=True)
        return common.as_columns(record, SERVER_COLUMNS)


class ServerDelete(command_base.Command):
    """Delete a server: its guest, disk and records (a RESIZED server is
    confirmed first; refused while an operation on it is unfinished)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        api.delete_server(common.caller_context(self.app), parsed.server)


class ServerList(lister.Lister):
    """List servers."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Only servers on this host.')
        return parser

    def take_action(self, parsed):
        cols = ('ID', 'Name', 'Host', 'Flavor', 'Status', 'Task State',
                'Power State')
        ctx = common.caller_context(self.app)
        rows = []
        servers = api.list_servers(ctx, host=parsed.host)
        for rec in _server_records(ctx, servers):
            rows.append((rec['uuid'], rec['name'], rec['host'],
                         rec['flavor'], rec['vm_state'], rec['task_state'],
                         rec['power_state']))
        return cols, rows


class ServerShow(show.ShowOne):
    """Show a server, and what its host's hypervisor says of it."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Name or uuid.')
        return parser

    def take_action(self, parsed):
        ctx = common.caller_context(self.app)
        rec, = _server_records(ctx, [api.get_server(ctx, parsed.server)],
                               images=True)
        try:
            info = api.get_hypervisor_info(ctx, rec['uuid'])
            rec['hypervisor'] = '%s, %d vCPU, %d MB' % (
                _power_name(info.power_state), info.vcpus, info.memory_mb)
        except exception.ResizeFlowsException as e:
            # Why, only to an admin: it names hosts and URIs.
            rec['hypervisor'] = ('unknown: %s' % e if ctx.is_admin
                                 else 'unknown')
        return common.as_columns(rec, SERVER_COLUMNS + ['hypervisor'])


class ServerConsoleLog(command_base.Command):
    """Print a server's serial console (its console.log), as it is."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>',
                            help='Name or uuid.')
        parser.add_argument('--lines', type=int, metavar='N',
                            help='Only the last N lines.')
        return parser

    def take_action(self, parsed):
        if parsed.lines is not None and parsed.lines < 0:
            raise exception.InvalidInput(
                reason='--lines must be >= 0, not %d' % parsed.lines)
        self.app.stdout.write(api.get_console_output(
            common.caller_context(self.app), parsed.server,
            lines=parsed.lines))


class ServerResize(common.OperationCommand):
    _description = rf_flows.OPERATIONS['resize'].summary

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        parser.add_argument('--flavor', required=True)
        return parser

    def take_action(self, parsed):
        return self.run_operation(parsed, api.resize, parsed.server,
                                  parsed.flavor)


class ServerResizeConfirm(common.OperationCommand):
    _description = rf_flows.OPERATIONS['confirm_resize'].summary

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        return self.run_operation(parsed, api.confirm_resize, parsed.server)


class ServerResizeRevert(common.OperationCommand):
    _description = rf_flows.OPERATIONS['revert_resize'].summary

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        return self.run_operation(parsed, api.revert_resize, parsed.server)


class ServerMigrate(common.OperationCommand):
    _description = rf_flows.OPERATIONS['migrate'].summary

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        parser.add_argument('--host', help='Target host (default: the '
                                           'scheduler chooses).')
        return parser

    def take_action(self, parsed):
        return self.run_operation(parsed, api.migrate, parsed.server,
                                  host=parsed.host)


class ServerLock(command_base.Command):
    """Lock a server: only an admin may then resize, migrate, confirm,
    revert or delete it."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        return parser

    def take_action(self, parsed):
        api.lock_server(common.caller_context(self.app), parsed.server)


class ServerUnlock(ServerLock):
    """Unlock a server."""

    def take_action(self, parsed):
        api.unlock_server(common.caller_context(self.app), parsed.server)


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
        outcome = api.confirm_expired(common.caller_context(self.app),
                                      window=parsed.window)
        return ('Server', 'Result'), sorted(outcome.items())


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
                for m in api.list_migrations(
                    common.caller_context(self.app), parsed.server)]
        return cols, rows


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
        ctx = common.caller_context(self.app)
        for act in api.list_actions(ctx, parsed.server):
            rows.append((act['request_id'], act['action'], '', act['message'],
                         act['start_time'], act['finish_time']))
            for ev in act['events']:
                rows.append(('', '', ev['event'], ev['result'],
                             ev['start_time'], ev['finish_time']))
        return cols, rows


class ServerMigrationAbort(show.ShowOne):
    """Abort a server's move in progress (admin): its flow stops at its
    next safe point and is undone, the migration ends cancelled."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        parser.add_argument(
            '--wait', action='store_true',
            help='Wait until the move is undone (or has ended otherwise).')
        parser.add_argument(
            '--timeout', type=int, default=600,
            help='Seconds to wait at most with --wait (default 600).')
        return parser

    def take_action(self, parsed):
        out = api.abort_migration(common.caller_context(self.app),
                                  parsed.server, wait=parsed.wait,
                                  timeout=parsed.timeout)
        cols = ('migration_uuid', 'flow_id', 'status')
        return cols, tuple(out[c] for c in cols)
