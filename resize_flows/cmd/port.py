"""The ``port`` commands (the ``ports`` plugin) and ``server port attach
|detach``."""
from cliff import command as command_base
from cliff import lister
from cliff import show

from resize_flows import api
from resize_flows.cmd import common

COLUMNS = ['id', 'name', 'mac_address', 'server', 'bindings', 'project_id',
           'created_at']


def _record(port):
    """A port as the commands show it: its server, and its bindings as
    ``host=STATUS``."""
    out = dict(port)
    out['server'] = port['instance_uuid']
    out['bindings'] = ', '.join(
        '%s=%s' % (b['host'], b['status']) for b in port['bindings'])
    return out


class PortCreate(show.ShowOne):
    """Create a port (a NIC with a MAC for life), attached to a server at
    once with --server."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        parser.add_argument('--server', metavar='<server>',
                            help='Attach it to this server (name or uuid).')
        parser.add_argument('--mac', metavar='<mac>',
                            help='Its MAC address (default: a new '
                                 'fa:16:3e:xx:xx:xx).')
        return parser

    def take_action(self, parsed):
        port = api.create_port(common.caller_context(self.app), parsed.name,
                               server=parsed.server, mac=parsed.mac)
        return common.as_columns(_record(port), COLUMNS)


class PortList(lister.Lister):
    """List ports (a non-admin: its project's)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--server', metavar='<server>',
                            help='Only the ports of this server.')
        return parser

    def take_action(self, parsed):
        ports = api.list_ports(common.caller_context(self.app),
                               server=parsed.server)
        rows = []
        for port in ports:
            rec = _record(port)
            rows.append((rec['id'], rec['name'], rec['mac_address'],
                         rec['server'], rec['bindings']))
        return ('ID', 'Name', 'MAC Address', 'Server', 'Bindings'), rows


def _one_port_args(parser, with_server):
    """The arguments of a command on one port: ``[<server>] <port>``."""
    if with_server:
        parser.add_argument('server', metavar='<server>')
    parser.add_argument('port', metavar='<port>', help='Port id or name.')
    return parser


class _OnePort(show.ShowOne):
    """A command on one port (of a server with ``with_server``) that
    shows the port afterwards: :meth:`act` calls the API."""

    with_server = False

    def get_parser(self, prog_name):
        return _one_port_args(super().get_parser(prog_name),
                              self.with_server)

    def act(self, ctx, parsed):
        raise NotImplementedError

    def take_action(self, parsed):
        port = self.act(common.caller_context(self.app), parsed)
        return common.as_columns(_record(port), COLUMNS)


class PortShow(_OnePort):
    """Show a port and its bindings."""

    def act(self, ctx, parsed):
        return api.get_port(ctx, parsed.port)


class PortDelete(command_base.Command):
    """Delete a port that is attached to no server."""

    def get_parser(self, prog_name):
        return _one_port_args(super().get_parser(prog_name), False)

    def take_action(self, parsed):
        api.delete_port(common.caller_context(self.app), parsed.port)


class ServerPortAttach(_OnePort):
    """Attach a port to a server: a NIC of its guest, bound on its host
    (refused while the server has a task under way or is RESIZED)."""

    with_server = True

    def act(self, ctx, parsed):
        return api.attach_port(ctx, parsed.server, parsed.port)


class ServerPortDetach(_OnePort):
    """Detach a port from a server: its NIC taken out of the guest, its
    bindings removed."""

    with_server = True

    def act(self, ctx, parsed):
        port = api.detach_port(ctx, parsed.server, parsed.port)
        if not port['released']:
            common.tell_unreleased(self.app, 'port', port['id'],
                                   parsed.server)
        return port
