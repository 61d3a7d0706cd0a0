"""A server's console log on a host whose files are on another machine
(an sshd in a mount namespace of its own, tests/ssh_fixtures.py): read
there over ssh, '' when there is none, a link in its place refused in one
line, nothing changed; a long log is read from its end, here and there."""
import subprocess

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


@pytest.mark.parametrize('where', ['here', 'far'])
def test_a_long_console_log_is_read_from_its_end(cloud, machines, conf,
                                                 where):
    """The guest writes console.log: only its last
    [compute]/console_output_max_bytes are read, and bytes that are not
    UTF-8 do not break the command."""
    if where == 'far':
        machine = machines()
        cloud.remote_host('far', machine)
        run = machine.run
    else:
        cloud.local_host('here')

        def run(script):
            subprocess.run(['sh', '-c', script], check=True)
    vm = api.create_server(cloud.ctx, 'vm1', 'small', where)
    drv = virt.get_driver(repository.host_get(where))
    log = remote.q(drv.instance_dir(vm['uuid']) + '/' + layout.CONSOLE_LOG)
    conf.set_override('console_output_max_bytes', 4096, group='compute')
    # 1 MiB of junk, a byte that is not UTF-8, then 4000 bytes of lines.
    run("head -c 1048576 /dev/zero > {0} && printf '\\377' >> {0} && "
        "for i in $(seq 1000 1799); do echo line$i; done >> {0}".format(log))
    text = api.get_console_output(cloud.ctx, 'vm1')
    assert len(text.encode()) <= 4096
    assert text.endswith('line1798\nline1799\n')
    assert text.count('line') == 4096 // len('line1000\n')
    assert api.get_console_output(cloud.ctx, 'vm1', lines=2) == \
        'line1798\nline1799\n'
    run("printf 'ok \\377 ok\\n' > %s" % log)
    assert api.get_console_output(cloud.ctx, 'vm1') == 'ok \ufffd ok\n'
    conf.clear_override('console_output_max_bytes', group='compute')
