"""The volume commands and server volume attach|detach, run in this
process on test-driver hosts with the volumes plugin enabled."""
import os

import pytest

from resize_flows.persistence import volumes as volume_db
from resize_flows.plugins import volumes as volume_plugin
from resize_flows.testing import state
from resize_flows import virt
from tests.functional import cli_helpers as cli
from tests.functional import volume_helpers as vh


@pytest.fixture
def rfv(conf, tmp_path):
    """Run the CLI with a config file enabling the volumes plugin;
    returns (exit code, stdout, stderr). vm1 on host1, vm2 on host2."""
    yield cli.make_cli(conf, tmp_path, plugins=['volumes'],
                       servers=(('vm1', 'host1'), ('vm2', 'host2')))
    virt.reset()


def _json(rfv, *argv):
    return cli.show(rfv, *argv)


def test_volume_commands_and_a_migrate(rfv):
    code, out, err = rfv('volume', 'create', 'data', '--size', '1',
                         '--format', 'raw')
    assert code == 0, err
    made = _json(rfv, 'volume', 'show', out.strip())
    assert (made['name'], made['size_gb'], made['disk_format'],
            made['status']) == ('data', 1, 'raw', 'available')
    assert vh.qemu_img_info(made['path'])['format'] == 'raw'
    assert [v['Name'] for v in _json(rfv, 'volume', 'list')] == ['data']
    assert rfv('server', 'volume', 'attach', 'vm1', 'data')[0] == 0
    shown = _json(rfv, 'volume', 'show', 'data')
    assert shown['status'] == 'in-use'
    [att] = shown['attachments']
    assert (att['host'], att['connected']) == ('host1', True)
    vm1 = _json(rfv, 'server', 'show', 'vm1')['uuid']
    assert made['id'] in vh.domain_disks('host1', vm1)

    assert rfv('server', 'migrate', 'vm1', '-q')[0] == 0
    assert made['id'] in vh.domain_disks('host2', vm1)
    assert rfv('server', 'resize', 'confirm', 'vm1')[0] == 0
    assert [(a['host'], a['connected'])
            for a in _json(rfv, 'volume', 'show', 'data')['attachments']] \
        == [('host2', True)]
    assert vh.plugin().audit() == []

    assert rfv('server', 'volume', 'detach', 'vm1', 'data')[0] == 0
    assert vh.domain_disks('host2', vm1) == {}
    assert rfv('volume', 'delete', 'data')[0] == 0
    assert not os.path.exists(made['path'])
    assert _json(rfv, 'volume', 'list') == []


def _unchanged():
    folder = os.path.dirname(volume_db.volume_list()[0]['path'])
    return (state.capture(), vh.plugin().state(), sorted(os.listdir(folder)))


@pytest.mark.parametrize('argv, message', [
    (('volume', 'create', 'x', '--size', 'many'),
     "size must be a whole number >= 1, not 'many'"),
    (('volume', 'create', 'x', '--size', '0'),
     'size must be a whole number >= 1, not 0'),
    (('volume', 'create', 'x', '--size', '1', '--format', 'vmdk'),
     "a volume is qcow2 or raw, not 'vmdk'"),
    (('volume', 'show', 'nope'), 'Volume nope could not be found.'),
    (('volume', 'delete', 'data'), 'is in use: attached to server'),
    (('server', 'volume', 'attach', 'vm2', 'data'),
     'is in use: attached to server'),
    (('server', 'volume', 'attach', 'vm2', 'nope'),
     'Volume nope could not be found.'),
    (('server', 'volume', 'detach', 'vm2', 'data'), 'is not attached to'),
    (('--os-project-id', 'other', '--os-roles', 'member', 'volume', 'show',
      'data'), 'Volume data could not be found.'),
    (('--os-project-id', 'other', '--os-roles', 'member', 'server', 'volume',
      'attach', 'vm1', 'data'), 'Instance vm1 could not be found.'),
])
def test_bad_input_is_one_line_and_changes_nothing(rfv, argv, message):
    assert rfv('volume', 'create', 'data', '--size', '1')[0] == 0
    assert rfv('server', 'volume', 'attach', 'vm1', 'data')[0] == 0
    cli.one_line_error(rfv, argv, message, _unchanged)


def test_a_detach_the_running_guest_does_not_ack_says_so(rfv, monkeypatch):
    """libvirt's test driver has no live detach: the guest's side is
    made to keep the disk (as a QEMU guest that never acknowledges the
    unplug does, tests/integration/test_qemu_device_detach.py); the
    command still detaches and says so in one line."""
    real = volume_plugin.sync

    def guest_keeps_it(host, uuid, suffix='', skip=None):
        added, removed, _kept = real(host, uuid, suffix, skip)
        return added, removed, removed

    monkeypatch.setattr(volume_plugin, 'sync', guest_keeps_it)
    code, out, err = rfv('volume', 'create', 'data', '--size', '1')
    assert code == 0, err
    vid = out.strip()
    assert rfv('server', 'volume', 'attach', 'vm1', 'data')[0] == 0
    code, out, err = rfv('server', 'volume', 'detach', 'vm1', 'data')
    assert code == 0, err
    vm1 = _json(rfv, 'server', 'show', 'vm1')['uuid']
    assert err == ('volume %s: the running guest of server %s did not '
                   'release it; its definition no longer has it, the '
                   'running guest keeps it until it stops\n' % (vid, vm1))
    assert _json(rfv, 'volume', 'show', 'data')['status'] == 'available'
    assert vh.domain_disks('host1', vm1) == {}
