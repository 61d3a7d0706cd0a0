"""pytest plugin of resize-flows, installed with the package (``pytest11``).

Fixtures for any suite that drives resize-flows, ours or an embedder's:

``rf_faults``
    Arms faults in named tasks for this test and clears them afterwards::

        def test_copy_failure_is_undone(rf_faults):
            rf_faults.inject('CopyDisk', 'after-execute')       # raises
            rf_faults.inject('FinishMigration', action='crash')  # os._exit
            ...

    ``rf_faults.env('CopyDisk', 'after-execute', 'crash')`` returns an
    environment for a subprocess (a ``resize-flows`` command) that then
    dies at that point (with fault injection switched on there:
    ``faults.SWITCH=1``); ``rf_faults.hits(task, point)`` tells how often a
    fault fired.

``rf_cloud_state``
    :mod:`resize_flows.testing.state`: ``capture()`` of records,
    hypervisors and instance directories, and ``leaks()``.

Loading the plugin switches fault injection on in the test process
(``faults.enable()``); nothing else does, short of ``faults.SWITCH=1``
in a process's environment.
"""
import os

import pytest

from resize_flows.testing import faults
from resize_flows.testing import state


class FaultInjector:
    """What ``rf_faults`` gives a test."""

    POINTS = faults.POINTS
    ACTIONS = faults.ACTIONS
    InjectedFault = faults.InjectedFault
    SimulatedCrash = faults.SimulatedCrash

    def inject(self, task, point=faults.BEFORE_EXECUTE, action=faults.RAISE,
               exc_class=None, times=1):
        faults.inject(task, point, action, exc_class=exc_class, times=times)

    def hits(self, task, point=faults.BEFORE_EXECUTE):
        return faults.hits(task, point)

    def clear(self):
        faults.clear()

    @staticmethod
    def spec(task, point=faults.BEFORE_EXECUTE, action=faults.CRASH,
             exc_class=None):
        """``TASK:POINT:ACTION[:EXCEPTION]``, checked."""
        text = '%s:%s:%s' % (task, point, action)
        if exc_class is not None:
            text += ':%s.%s' % (exc_class.__module__, exc_class.__qualname__)
        faults.parse(text)
        return text

    def env(self, task, point=faults.BEFORE_EXECUTE, action=faults.CRASH,
            exc_class=None, base=None):
        """A copy of ``base`` (default os.environ) arming this fault in a
        resize-flows process started with it."""
        env = dict(os.environ if base is None else base)
        env['OS_TESTING__FAULTS'] = self.spec(task, point, action, exc_class)
        env[faults.SWITCH] = '1'
        return env


def pytest_configure(config):
    """Fault injection is for tests: on in the process pytest runs in."""
    faults.enable()


@pytest.fixture
def rf_faults():
    """Arm faults in named resize-flows tasks; cleared after the test."""
    faults.clear()
    yield FaultInjector()
    faults.clear()


@pytest.fixture
def rf_cloud_state():
    """resize_flows.testing.state: capture() and leaks()."""
    return state
