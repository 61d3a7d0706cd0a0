"""The ``port`` and ``server port`` commands, run in this process on
test-driver hosts with the ``ports`` plugin enabled."""
import json

import pytest

from resize_flows.plugins import ports as ports_plugin
from resize_flows.testing import state
from resize_flows import virt
from tests.functional import cli_helpers as cli


@pytest.fixture
def rfp(conf, tmp_path):
    """Run the CLI with a config file naming a fresh state dir and the
    ports plugin; returns (exit code, stdout, stderr). Two hosts, a
    flavor, vm1 on host1."""
    yield cli.make_cli(conf, tmp_path, plugins=['ports'])
    virt.reset()


def _show(rfp, *argv):
    return cli.show(rfp, *argv)


def _cloud():
    return state.capture(), ports_plugin.PortsPlugin().state()


def test_create_attach_migrate_confirm_detach_delete(rfp):
    web = _show(rfp, 'port', 'create', 'web', '--server', 'vm1')
    assert web['mac_address'].startswith('fa:16:3e:')
    assert web['bindings'] == 'host1=ACTIVE'
    spare = _show(rfp, 'port', 'create', 'spare', '--mac',
                  'fa:16:3e:00:00:01')
    assert (spare['server'], spare['bindings']) == (None, '')
    vm = web['server']
    attached = _show(rfp, 'server', 'port', 'attach', 'vm1', 'spare')
    assert (attached['server'], attached['bindings']) == (vm,
                                                          'host1=ACTIVE')
    assert rfp('server', 'migrate', 'vm1', '-q')[0] == 0
    listed = _show(rfp, 'port', 'list', '--server', 'vm1')
    assert [(p['Name'], p['MAC Address'], p['Bindings']) for p in listed] \
        == [('spare', 'fa:16:3e:00:00:01', 'host1=INACTIVE, host2=ACTIVE'),
            ('web', web['mac_address'], 'host1=INACTIVE, host2=ACTIVE')]
    assert rfp('server', 'resize', 'confirm', 'vm1', '-q')[0] == 0
    assert _show(rfp, 'port', 'show', 'web')['bindings'] == 'host2=ACTIVE'
    detached = _show(rfp, 'server', 'port', 'detach', 'vm1', 'spare')
    assert (detached['server'], detached['bindings']) == (None, '')
    code, _out, err = rfp('port', 'delete', 'spare')
    assert code == 0, err
    assert [p['Name'] for p in _show(rfp, 'port', 'list')] == ['web']
    assert ports_plugin.audit() == []
    assert state.leaks() == []


def _one_line_error(rfp, argv, message):
    cli.one_line_error(rfp, argv, message, _cloud)


def test_bad_input_is_one_line_and_changes_nothing(rfp):
    web = _show(rfp, 'port', 'create', 'web', '--server', 'vm1')
    assert rfp('server', 'create', 'vm2', '--flavor', 'tiny', '--host',
               'host2')[0] == 0
    assert rfp('--os-project-id', 'other', '--os-roles', 'member', 'port',
               'create', 'theirs', '--mac', 'fa:16:3e:00:00:09')[0] == 0
    _show(rfp, 'port', 'create', 'free')
    member = ('--os-roles', 'member')
    for argv, message in [
            (('port', 'show', 'nope'), 'Port nope could not be found.'),
            (('port', 'delete', 'nope'), 'Port nope could not be found.'),
            (('server', 'port', 'attach', 'vm1', 'nope'),
             'Port nope could not be found.'),
            (member + ('port', 'show', 'theirs'),
             'Port theirs could not be found.'),
            (member + ('server', 'port', 'attach', 'vm1', 'theirs'),
             'Port theirs could not be found.'),
            (('server', 'port', 'attach', 'vm2', 'web'),
             'is attached to server %s' % web['server']),
            (('port', 'delete', 'web'),
             'is attached to server %s' % web['server']),
            (('server', 'port', 'detach', 'vm2', 'web'),
             'is not attached to server'),
            (('port', 'create', 'dup', '--mac', 'fa:16:3e:00:00:09'),
             'MAC address fa:16:3e:00:00:09 is in use'),
            (('port', 'create', 'bad', '--mac', 'xx'),
             'six pairs of hex digits'),
            (('port', 'create', 'new', '--server', 'nope'),
             'Instance nope could not be found.')]:
        _one_line_error(rfp, argv, message)
    assert rfp('server', 'migrate', 'vm1', '-q')[0] == 0
    for argv in (('server', 'port', 'attach', 'vm1', 'free'),
                 ('server', 'port', 'detach', 'vm1', 'web'),
                 ('port', 'create', 'new', '--server', 'vm1')):
        _one_line_error(rfp, argv, 'while it is in vm_state resized')


def test_a_detach_the_running_guest_does_not_ack_says_so(rfp, monkeypatch):
    """The guest's side made to keep the NIC (libvirt's test driver has
    no live detach; tests/unit/virt/test_device_detach.py and the QEMU
    test of volumes have the real wait): the port is detached and the
    command says so in one line."""
    real = ports_plugin.update_guest

    def guest_keeps_it(instance_uuid, host):
        added, removed, _kept = real(instance_uuid, host)
        return added, removed, removed

    monkeypatch.setattr(ports_plugin, 'update_guest', guest_keeps_it)
    web = _show(rfp, 'port', 'create', 'web', '--server', 'vm1')
    code, out, err = rfp('server', 'port', 'detach', 'vm1', 'web', '-f',
                         'json')
    assert code == 0, err
    assert err == ('port %s: the running guest of server vm1 did not '
                   'release it; its definition no longer has it, the '
                   'running guest keeps it until it stops\n' % web['id'])
    assert json.loads(out)['bindings'] == ''
    assert _show(rfp, 'port', 'show', 'web')['server'] is None
