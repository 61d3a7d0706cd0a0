"""What a test needs from the machine: skip without it, or fail where it
must be there.

A developer's machine may lack a database server, Redis or sshd: the
tests that need one skip with the reason. On CI (``CI=true``), or where
the variable named for that need is ``1``, they fail instead, so that a
machine that must run them cannot pass by skipping them.
"""
import os

import pytest


def required(variable):
    """True where the tests behind ``variable`` must run."""
    return (os.environ.get('CI', '').lower() == 'true'
            or os.environ.get(variable) == '1')


def unavailable(message, variable, must):
    """Skip the test with ``message``, or fail it where it is required
    (``must`` says what this machine must do)."""
    if required(variable):
        pytest.fail('%s (CI=true or %s=1: %s)' % (message, variable, must),
                    pytrace=False)
    pytest.skip(message)
