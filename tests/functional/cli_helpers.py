"""The resize-flows command run in the test's process, for the CLI tests
(test_cli.py, test_port_commands.py, test_volume_cli.py...): a config
file naming a fresh state dir, the database made, two hosts, flavors
and servers; each command's (exit code, stdout, stderr)."""
import io
import json

from resize_flows.cmd import shell
from resize_flows import virt

#: (name, vcpus, ram MB, disk GB) of the flavor every cloud has.
TINY = ('tiny', 1, 64, 1)


def make_cli(conf, tmp_path, plugins=(), flavors=(TINY,),
             servers=(('vm1', 'host1'),)):
    """``run(*argv)`` -> (exit code, stdout, stderr) of the CLI with a
    config file of its own (``plugins`` enabled), after ``db sync``,
    ``host create`` host1 and host2, ``flavor create`` of each of
    ``flavors`` and ``server create`` of each (name, host) of
    ``servers``. The caller resets ``virt`` when done."""
    conf_file = tmp_path / 'rf.conf'
    text = '[DEFAULT]\nstate_dir = %s\n' % (tmp_path / 'cli-state')
    if plugins:
        text += 'plugins = %s\n' % ', '.join(plugins)
    conf_file.write_text(
        text + '[libvirt]\nlocal_hypervisor = test\n'
        '[compute]\nshutdown_timeout = 0\n')
    conf.clear_override('state_dir')
    conf.clear_override('local_hypervisor', group='libvirt')
    virt.reset()

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(
            ['--config-file', str(conf_file)] + list(argv))
        return code, out.getvalue(), err.getvalue()

    code, _, err = run('db', 'sync')
    assert code == 0, err
    for host in ('host1', 'host2'):
        assert run('host', 'create', host, '--vcpus', '4', '--memory-mb',
                   '1024', '--disk-gb', '10')[0] == 0
    for name, vcpus, ram, disk in flavors:
        assert run('flavor', 'create', name, '--vcpus', str(vcpus), '--ram',
                   str(ram), '--disk', str(disk))[0] == 0
    for name, host in servers:
        assert run('server', 'create', name, '--flavor', flavors[0][0],
                   '--host', host)[0] == 0
    return run


def show(run, *argv):
    """The JSON output (``-f json``) of a command that must succeed."""
    code, out, err = run(*argv, '-f', 'json')
    assert code == 0, err
    return json.loads(out)


def one_line_error(run, argv, message, unchanged):
    """``run(*argv)`` fails with one line on stderr holding ``message``,
    no traceback, and ``unchanged()`` (what the command must leave as it
    was: records, hypervisors, disks) is the same after; the line."""
    before = unchanged()
    code, _out, err = run(*argv)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert 'Traceback' not in err
    assert unchanged() == before
    return lines[0]
