"""A server's console log on a host whose files are on another machine
(an sshd in a mount namespace of its own, tests/ssh_fixtures.py): read
there over ssh, '' when there is none, a link in its place refused in one
line, nothing changed."""
import pytest

from resize_flows import api
from resize_flows import exception
from resize_flows.persistence import repository
from resize_flows.testing import faults
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import layout
from resize_flows.virt.libvirt import remote
from tests.functional import test_remote_hosts
from tests import ssh_fixtures

machines = ssh_fixtures.machines       # fixtures
ssh_keys = ssh_fixtures.ssh_keys


@pytest.fixture
def cloud(conf, db_url, tmp_path):
    virt.reset()
    faults.clear()
    yield test_remote_hosts.Cloud(tmp_path)
    api.wait_all()
    virt.reset()


def test_console_log_on_another_machine(cloud, machines):
    machine = machines()
    cloud.remote_host('far', machine)
    vm = api.create_server(cloud.ctx, 'vm1', 'small', 'far')
    drv = virt.get_driver(repository.host_get('far'))
    log = remote.q(drv.instance_dir(vm['uuid']) + '/' + layout.CONSOLE_LOG)
    assert api.get_console_output(cloud.ctx, 'vm1') == ''
    machine.run("printf 'one\\ntwo\\nthree\\n' > %s" % log)
    assert api.get_console_output(cloud.ctx, 'vm1') == 'one\ntwo\nthree\n'
    assert api.get_console_output(cloud.ctx, 'vm1', lines=1) == 'three\n'
    # A link in its place is not followed: one line, nothing changed.
    machine.run('rm %s && ln -s /etc/passwd %s' % (log, log))
    before = state.capture()
    with pytest.raises(exception.DiskError) as raised:
        api.get_console_output(cloud.ctx, 'vm1')
    assert '\n' not in str(raised.value)
    assert 'root:' not in str(raised.value)
    assert state.capture() == before
