"""The ``resize-flows`` command: python-openstackclient's shape, thin.

The cliff application and :func:`main` (the console script). Built on
cliff, as openstackclient is: multi-word commands, ``-f json|table|value
|yaml|csv`` and ``-c COLUMN`` on every list and show, ``--debug`` for
tracebacks. The commands live one module per resource beside this one
(server, flow, host and flavor, db, conductor) and are found through the
``resize_flows.cli`` entry points in setup.cfg. Each parses, calls
:mod:`resize_flows.api` (or the persistence layer for ``db``), and
formats; errors print as one line and exit non-zero.
"""
import logging
import os
import sys

from cliff import app
from cliff import commandmanager

from resize_flows import api
from resize_flows.cmd import common
from resize_flows import conf as rf_conf
from resize_flows.conf import CONF
from resize_flows import policy

#: The entry point group of the commands (setup.cfg).
COMMAND_NAMESPACE = 'resize_flows.cli'


class _HideDetails(logging.Filter):
    def filter(self, record):
        return record.name != api.DETAILS_LOG.name


class ResizeFlowsApp(app.App):

    def __init__(self, stdout=None, stderr=None):
        manager = commandmanager.CommandManager(COMMAND_NAMESPACE)
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
        api.arm_configured_faults(CONF)

    def clean_up(self, cmd, result, err):
        # A --no-wait operation printed its ids; its flow runs on in this
        # process: the command ends with it.
        api.wait_all()

    def prepare_to_run_command(self, cmd):
        if (isinstance(cmd, common.MoveCommand)
                and CONF.flows.resume_interrupted
                and policy.check(common.caller_context(self),
                                 policy.FLOW_RESUME)):
            for flow_id, outcome in api.resume_interrupted(
                    common.caller_context(self)).items():
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
        api.shutdown()


if __name__ == '__main__':
    # ``python -m resize_flows.cmd.shell``: run the application of this
    # module under its own name, not of __main__, as the console script
    # does; cliff's help names the distribution of each command whose
    # module is not the application's.
    from resize_flows.cmd import shell
    sys.exit(shell.main())
