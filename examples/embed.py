"""Embedding resize-flows in a cloud controller: a runnable example.

    python examples/embed.py [--config-file PATH/resize-flows.conf]

Without a config file it runs on libvirt's test driver in a throwaway
state directory, so it needs no hypervisor. It shows what a REST front
does with the API: a request context per request, an operation that
returns at once with its ids, waiting for it, the errors and their
status codes, notifications and the periodic auto-confirm.
"""
import sys
import tempfile

from resize_flows import api
from resize_flows import conf
from resize_flows import exception
from resize_flows import notifications
from resize_flows.persistence import migration


class PrintNotifier:
    """A notifier plugin: an object with notify(notification). A real one
    is registered through the resize_flows.notifiers entry point group
    and named in [notifications]/drivers."""

    def notify(self, notification):
        print('  notification: %s (%s -> %s)' % (
            notification['event_type'],
            notification['payload']['source_host'],
            notification['payload']['dest_host']))


def setup(argv):
    conf.register_opts(conf.CONF)
    conf.CONF(argv, project='resize-flows')
    if not conf.CONF.config_file:
        # No configuration: a throwaway cloud on libvirt's test driver.
        conf.CONF.set_override('state_dir', tempfile.mkdtemp())
        conf.CONF.set_override('local_hypervisor', 'test', group='libvirt')
        conf.CONF.set_override('shutdown_timeout', 0, group='compute')
    migration.db_sync()
    notifications.register('print', PrintNotifier())
    conf.CONF.set_override('drivers', ['print'], group='notifications')


def main(argv):
    setup(argv)
    admin = api.get_admin_context()
    for name in ('compute-1', 'compute-2'):
        api.create_host(admin, name, vcpus=8, memory_mb=4096, disk_gb=40)
    api.create_flavor(admin, 'm1.small', 1, 64, 1)
    api.create_flavor(admin, 'm1.large', 2, 128, 2)

    # One context per request: who asks, in which project, with which
    # roles. A member of project "demo" boots a server in it, where the
    # scheduler chooses (naming a host is an admin's).
    alice = api.RequestContext(user_id='alice', project_id='demo',
                               roles=('member',))
    server = api.create_server(alice, 'web-1', 'm1.small')
    print('server %s on %s' % (server['uuid'], server['host']))

    # An operation returns at once (a REST front answers 202 here) ...
    op = api.resize(api.RequestContext(user_id='alice', project_id='demo',
                                       roles=('member',)),
                    'web-1', 'm1.large')
    print('resize started: migration %s, flow %s, request %s' % (
        op.migration_uuid, op.flow_id, op.request_id))
    # ... and runs in a thread of this process; wait when needed.
    op.wait(timeout=300)
    print('resize %s: migration %s on %s' % (
        op.flow_state, op.migration['status'], op.migration['dest_compute']))

    # Errors are resize_flows.exception classes carrying their status.
    bob = api.RequestContext(user_id='bob', project_id='other',
                             roles=('member',))
    for who, call in (
            ('bob (another project) confirms',
             lambda: api.confirm_resize(bob, 'web-1')),
            ('alice migrates (admin only)',
             lambda: api.migrate(alice, 'web-1')),
            ('alice resizes again before confirming',
             lambda: api.resize(alice, 'web-1', 'm1.small'))):
        try:
            call()
        except exception.ResizeFlowsException as e:
            print('%s -> %d %s' % (who, e.code, type(e).__name__))

    # Nobody confirms: after [compute]/resize_confirm_window seconds the
    # periodic task does (window 0 here: confirm right away).
    print('auto-confirmed: %s' % api.confirm_expired(admin, window=0.001))
    print('web-1 is %s on %s' % (
        api.get_server(alice, 'web-1')['vm_state'],
        api.get_server(alice, 'web-1')['host']))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
