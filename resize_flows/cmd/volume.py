"""The ``volume`` commands and ``server volume attach|detach``: the
file-backed volumes of the ``volumes`` plugin."""
from cliff import command as command_base
from cliff import lister
from cliff import show

from resize_flows import api
from resize_flows.cmd import common

COLUMNS = ['id', 'name', 'size_gb', 'disk_format', 'status', 'path',
           'attachments', 'project_id', 'created_at']


def _whole(text):
    """``text`` as an int when it is one; else as it is, for the API to
    refuse in one line."""
    try:
        return int(text)
    except ValueError:
        return text


class VolumeCreate(command_base.Command):
    """Create a blank volume: a qcow2 or raw file in [volumes]/volume_dir
    that a server's guest sees as a virtio disk once attached. Prints its
    id ("volume show" shows the rest; a plain command, so that --format
    is the file's format, not the output's)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        parser.add_argument('--size', required=True, metavar='GB',
                            help='Its size in GiB (a whole number >= 1).')
        parser.add_argument('--format', '--disk-format', default='qcow2',
                            dest='disk_format', metavar='qcow2|raw',
                            help='The file\'s format (default: qcow2).')
        return parser

    def take_action(self, parsed):
        ctx = common.caller_context(self.app)
        vol = api.create_volume(ctx, parsed.name, _whole(parsed.size),
                                disk_format=parsed.disk_format)
        self.app.stdout.write(vol['id'] + '\n')


class VolumeList(lister.Lister):
    """List the volumes of one's project (every project's for an
    admin)."""

    def take_action(self, parsed):
        cols = ('ID', 'Name', 'Size', 'Format', 'Status')
        return cols, [(v['id'], v['name'], v['size_gb'], v['disk_format'],
                       v['status'])
                      for v in api.list_volumes(
                          common.caller_context(self.app))]


def _volume_arg(parser):
    parser.add_argument('volume', metavar='<volume>',
                        help='Volume name or id.')
    return parser


class VolumeShow(show.ShowOne):
    """Show a volume and its attachments (``host=connected`` or
    ``host=disconnected``; in full with -f json or yaml)."""

    def get_parser(self, prog_name):
        return _volume_arg(super().get_parser(prog_name))

    def take_action(self, parsed):
        vol = api.get_volume(common.caller_context(self.app), parsed.volume)
        if parsed.formatter in ('table', 'value', 'shell'):
            # As "port show" gives bindings: host and whether connected.
            vol = dict(vol, attachments=', '.join(
                '%s=%s' % (a['host'], 'connected' if a['connected']
                           else 'disconnected')
                for a in vol['attachments']))
        return common.as_columns(vol, COLUMNS)


class VolumeDelete(command_base.Command):
    """Delete a volume that is not attached, and its file."""

    def get_parser(self, prog_name):
        return _volume_arg(super().get_parser(prog_name))

    def take_action(self, parsed):
        api.delete_volume(common.caller_context(self.app), parsed.volume)


class ServerVolumeAttach(command_base.Command):
    """Attach a volume to a server (a virtio disk of its guest: live on a
    running guest); refused while the server has a task or is RESIZED,
    and for a volume attached elsewhere."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('server', metavar='<server>')
        parser.add_argument('volume', metavar='<volume>')
        return parser

    def take_action(self, parsed):
        api.attach_volume(common.caller_context(self.app), parsed.server,
                          parsed.volume)


class ServerVolumeDetach(ServerVolumeAttach):
    """Detach a volume from a server; it is available again."""

    def take_action(self, parsed):
        done = api.detach_volume(common.caller_context(self.app),
                                 parsed.server, parsed.volume)
        if not done['released']:
            common.tell_unreleased(self.app, 'volume', done['volume_id'],
                                   done['instance_uuid'])
