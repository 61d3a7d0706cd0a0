"""Other machines for the tests of hosts reached by ssh.

Each test gets machines of its own (:mod:`resize_flows.testing.machines`:
an sshd in a private mount namespace on 127.0.0.1) and [remote] options
that reach them with one key pair of the session. Where they cannot run
(no root, no sshd) the test is skipped with the reason on a developer's
machine, and fails where it must run (``CI=true`` or
``RESIZE_FLOWS_REQUIRE_SSH=1``), as ``db_fixtures`` does for databases.
"""
import pytest

from resize_flows.testing import machines as test_machines
from tests import needs


def require_machines():
    reason = test_machines.unavailable()
    if reason is not None:
        needs.unavailable(
            'test machines over ssh cannot run here: %s' % reason,
            'RESIZE_FLOWS_REQUIRE_SSH', 'this machine must run them; '
            '`make deps` installs openssh-server and rsync')


@pytest.fixture(scope='session')
def ssh_keys():
    require_machines()
    keys = test_machines.Keys()
    yield keys
    keys.remove()


@pytest.fixture
def machines(conf, ssh_keys):
    """``machines()`` starts another machine (``login_shell``: root's
    there, e.g. ``/bin/dash``); [remote] reaches it. All
    are stopped (every process on them killed) after the test."""
    for name, value in ssh_keys.conf_overrides().items():
        conf.set_override(name, value, group='remote')
    started = []

    def start(login_shell=None):
        machine = test_machines.Machine(ssh_keys,
                                        login_shell=login_shell).start()
        started.append(machine)
        return machine

    yield start
    for machine in started:
        machine.remove()
