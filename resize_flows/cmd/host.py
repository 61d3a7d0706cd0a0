"""The ``host`` and ``flavor`` commands: the compute hosts and the
flavors servers are sized by.
"""
from cliff import command as command_base
from cliff import lister
from cliff import show

from resize_flows import api
from resize_flows.cmd import common


# -- hosts -------------------------------------------------------------------

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
        host = api.create_host(common.caller_context(self.app), parsed.name,
                               parsed.vcpus, parsed.memory_mb,
                               parsed.disk_gb, uri=parsed.uri,
                               instances_path=parsed.instances_path,
                               ssh=parsed.ssh)
        return common.as_columns(host, ['name', 'uri', 'instances_path',
                                        'ssh', 'vcpus', 'memory_mb',
                                        'disk_gb', 'enabled'])


class HostDelete(command_base.Command):
    """Remove a host that holds no server (a local one is stopped)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        return parser

    def take_action(self, parsed):
        api.delete_host(common.caller_context(self.app), parsed.name)


class HostList(lister.Lister):
    """List compute hosts with their used and total capacity."""

    def take_action(self, parsed):
        cols = ('Name', 'Enabled', 'Disabled Reason', 'vCPUs used/total',
                'RAM MB used/total', 'Disk GB used/total', 'URI',
                'Files on')
        rows = [(h['name'], h['enabled'], h.get('disabled_reason'),
                 '%d/%d' % (h['used']['vcpus'], h['vcpus']),
                 '%d/%d' % (h['used']['memory_mb'], h['memory_mb']),
                 '%d/%d' % (h['used']['disk_gb'], h['disk_gb']), h['uri'],
                 h.get('ssh') or 'this machine')
                for h in api.list_hosts(common.caller_context(self.app))]
        return cols, rows


_HOST_STATE = ['name', 'enabled', 'disabled_reason']


class HostDisable(show.ShowOne):
    """Disable a host: the scheduler no longer picks it (its servers
    stay)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<host>')
        parser.add_argument('--reason', metavar='TEXT',
                            help='Why (shown by host list).')
        return parser

    def take_action(self, parsed):
        return common.as_columns(api.disable_host(
            common.caller_context(self.app), parsed.name,
            reason=parsed.reason), _HOST_STATE)


class HostEnable(show.ShowOne):
    """Enable a disabled host again."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<host>')
        return parser

    def take_action(self, parsed):
        return common.as_columns(api.enable_host(
            common.caller_context(self.app), parsed.name), _HOST_STATE)


class HostDrain(lister.Lister):
    """Disable a host and cold-migrate every server off it, confirming
    each; run it again to continue where it stopped. Exits 1 when a
    server failed to move."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<host>')
        parser.add_argument(
            '--parallel', type=int, default=1, metavar='N',
            help='Move N servers at a time (default 1).')
        parser.add_argument(
            '--no-confirm', dest='confirm', action='store_false',
            help='Leave each move finished, waiting for its confirm (or '
                 'revert); a later run without it confirms them.')
        return parser

    def take_action(self, parsed):
        rows = api.drain_host(common.caller_context(self.app), parsed.name,
                              parallel=parsed.parallel,
                              confirm=parsed.confirm)
        self.failed = any(r['status'] == 'failed' for r in rows)
        cols = ('Server', 'Name', 'From', 'To', 'Status', 'Reason',
                'Seconds')
        return cols, [(r['server'], r['name'], r['from'], r['to'],
                       r['status'], r['reason'], r['seconds'])
                      for r in rows]

    def run(self, parsed_args):
        self.failed = False
        code = super().run(parsed_args)
        return code or (1 if self.failed else 0)


# -- flavors -----------------------------------------------------------------

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
        parser.add_argument('--ephemeral', type=int, default=0,
                            metavar='GB',
                            help='Ephemeral disk in GB (default 0: none).')
        parser.add_argument('--swap', type=int, default=0, metavar='MB',
                            help='Swap disk in MB (default 0: none).')
        parser.add_argument('--private', action='store_true',
                            help='Only the projects given may use it.')
        parser.add_argument('--project', action='append', default=[],
                            help='A project allowed to use a private '
                                 'flavor (repeatable).')
        return parser

    def take_action(self, parsed):
        flavor = api.create_flavor(
            common.caller_context(self.app), parsed.name, parsed.vcpus,
            parsed.ram, parsed.disk, is_public=not parsed.private,
            projects=parsed.project, ephemeral_gb=parsed.ephemeral,
            swap_mb=parsed.swap)
        return _flavor_columns(flavor)


def _flavor_columns(flavor):
    flavor = dict(flavor, projects=','.join(flavor['projects']))
    return common.as_columns(flavor, ['id', 'name', 'vcpus', 'memory_mb',
                                      'root_gb', 'ephemeral_gb', 'swap_mb',
                                      'is_public', 'projects'])


class FlavorList(lister.Lister):
    """List flavors."""

    def take_action(self, parsed):
        cols = ('ID', 'Name', 'vCPUs', 'RAM', 'Disk', 'Ephemeral', 'Swap',
                'Is Public')
        ctx = common.caller_context(self.app)
        return cols, [(f['id'], f['name'], f['vcpus'], f['memory_mb'],
                       f['root_gb'], f['ephemeral_gb'], f['swap_mb'],
                       f['is_public'])
                      for f in api.list_flavors(ctx)]


class FlavorShow(show.ShowOne):
    """Show a flavor."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('flavor', metavar='<flavor>',
                            help='Flavor name or id.')
        return parser

    def take_action(self, parsed):
        return _flavor_columns(api.get_flavor(
            common.caller_context(self.app), parsed.flavor))
