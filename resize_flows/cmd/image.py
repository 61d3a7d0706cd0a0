"""The ``image`` commands: the disk images of the image store."""
from cliff import command as command_base
from cliff import lister
from cliff import show

from resize_flows import api
from resize_flows.cmd import common

COLUMNS = ['uuid', 'name', 'disk_format', 'size', 'virtual_size', 'sha256',
           'kernel_id', 'kernel_sha256', 'ramdisk_id', 'ramdisk_sha256',
           'created_at']


class ImageCreate(show.ShowOne):
    """Add a disk image (qcow2 or raw, without a backing file) to the
    image store."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('name', metavar='<name>')
        parser.add_argument('--file', required=True, metavar='PATH',
                            help='The disk image, a file on this machine.')
        parser.add_argument(
            '--disk-format', choices=('qcow2', 'raw'),
            help='The format the file must have (default: what qemu-img '
                 'finds, qcow2 or raw).')
        parser.add_argument('--kernel', metavar='PATH',
                            help='A kernel to boot the image by (with '
                                 '--ramdisk).')
        parser.add_argument('--ramdisk', metavar='PATH',
                            help='The initial ramdisk (with --kernel).')
        return parser

    def take_action(self, parsed):
        image = api.create_image(
            common.caller_context(self.app), parsed.name, parsed.file,
            disk_format=parsed.disk_format, kernel=parsed.kernel,
            ramdisk=parsed.ramdisk)
        return common.as_columns(image, COLUMNS)


class ImageList(lister.Lister):
    """List images."""

    def take_action(self, parsed):
        cols = ('ID', 'Name', 'Disk Format', 'Size', 'Virtual Size',
                'Kernel')
        return cols, [(i['uuid'], i['name'], i['disk_format'], i['size'],
                       i['virtual_size'], bool(i['kernel_id']))
                      for i in api.list_images(
                          common.caller_context(self.app))]


class ImageShow(show.ShowOne):
    """Show an image."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='<image>',
                            help='Image name or uuid.')
        return parser

    def take_action(self, parsed):
        return common.as_columns(
            api.get_image(common.caller_context(self.app), parsed.image),
            COLUMNS)


class ImageDelete(command_base.Command):
    """Delete an image that no server uses."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('image', metavar='<image>',
                            help='Image name or uuid.')
        return parser

    def take_action(self, parsed):
        api.delete_image(common.caller_context(self.app), parsed.image)


class ImageCacheClean(lister.Lister):
    """Remove the cached bases that no instance directory uses from the
    image cache (_base/) of every host, or of one; a base in use is never
    removed, nor one younger than
    [image_cache]/remove_unused_minimum_age_seconds. A host that does not
    answer is named on stderr (the others are cleaned) and the command
    then exits 1."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', metavar='<host>',
                            help='Only this host (default: every host).')
        return parser

    def take_action(self, parsed):
        result = api.clean_image_cache(common.caller_context(self.app),
                                       host=parsed.host)
        rows = [(host, r['base'], r['bytes'])
                for host, done in sorted(result.items())
                for r in done['removed']]
        self._total = (sum(d['bytes_freed'] for d in result.values()),
                       len(rows), len(result))
        self._errors = ['%s: %s' % (host, done['error'])
                        for host, done in sorted(result.items())
                        if 'error' in done]
        return ('Host', 'Base', 'Bytes'), rows

    def produce_output(self, parsed_args, column_names, data):
        status = super().produce_output(parsed_args, column_names, data)
        if parsed_args.formatter == 'table':
            freed, bases, hosts = self._total
            self.app.stdout.write(
                'Total: %d bytes freed, %d base%s removed on %d host%s\n'
                % (freed, bases, '' if bases == 1 else 's', hosts,
                   '' if hosts == 1 else 's'))
        for line in self._errors:
            self.app.stderr.write('not cleaned: %s\n' % line)
        return status

    def run(self, parsed_args):
        status = super().run(parsed_args)
        return status or (1 if self._errors else 0)
