"""The commands of resize-flows are the entry points of its distribution
(group ``resize_flows.cli`` in setup.cfg), as python-openstackclient's
are: every command its help lists is one, and every one of them loads."""
import importlib.metadata
import os
import subprocess
import sys

from cliff import command as command_base
import pytest

from resize_flows.cmd import shell

# cliff's own commands, not entry points of ours.
CLIFF_COMMANDS = {'complete', 'help'}


def _entry_points():
    dist = importlib.metadata.distribution('resize-flows')
    return [ep for ep in dist.entry_points
            if ep.group == shell.COMMAND_NAMESPACE]


def _listed(tmp_path, *argv):
    """The command names the installed console script lists."""
    script = os.path.join(os.path.dirname(sys.executable), 'resize-flows')
    env = {k: v for k, v in os.environ.items() if not k.startswith('OS_')}
    out = subprocess.run([script, *argv], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True,
                         timeout=120).stdout
    section = out.split('\nCommands:\n', 1)[1]
    return [line.strip().split('  ')[0] for line in section.splitlines()
            if line.strip()]


@pytest.mark.parametrize('argv', [('help',), ('--help',)])
def test_every_listed_command_is_an_entry_point(tmp_path, argv):
    listed = _listed(tmp_path, *argv)
    assert len(listed) == len(set(listed))
    names = [ep.name.replace('_', ' ') for ep in _entry_points()]
    assert len(names) == len(set(names))
    assert set(listed) - CLIFF_COMMANDS == set(names)


def test_every_entry_point_loads_a_command_of_the_cli():
    entry_points = _entry_points()
    assert entry_points
    for ep in entry_points:
        cls = ep.load()
        assert issubclass(cls, command_base.Command), ep
        assert cls.__module__.startswith('resize_flows.cmd.'), ep
        # What help shows of it: its _description or its docstring.
        assert cls._description or cls.__doc__, ep
