"""A Redis jobboard of its own for each test.

Redis is expected at 127.0.0.1:6379 (``RESIZE_FLOWS_TEST_REDIS`` names
another URL). Unreachable, it skips the test with the reason on a
developer's machine, and fails it where it must be there (``CI=true`` or
``RESIZE_FLOWS_REQUIRE_REDIS=1``), as ``db_fixtures`` does for databases.
Each test's board has a unique name, and its keys are deleted afterwards.
"""
import contextlib
import os
import uuid as uuidlib

import pytest

from tests import needs

URL = os.environ.get('RESIZE_FLOWS_TEST_REDIS', 'redis://127.0.0.1:6379')


def _client():
    import redis
    return redis.Redis.from_url(URL, socket_timeout=5,
                                socket_connect_timeout=2)


def require_redis():
    """Skip (or fail, see :mod:`tests.needs`) unless Redis answers."""
    try:
        _client().ping()
    except Exception as e:      # ImportError, ConnectionError, ...
        needs.unavailable('Redis is not reachable at %s: %s' % (URL, e),
                          'RESIZE_FLOWS_REQUIRE_REDIS',
                          'this machine must run the jobboard tests')


def unique_board():
    return 'rf-test-' + uuidlib.uuid4().hex[:12]


def delete_board(name):
    """Delete every key of a test's board (TaskFlow's and ours)."""
    with contextlib.suppress(Exception):
        client = _client()
        for pattern in (name + '*', 'resize-flows:%s:*' % name):
            keys = list(client.scan_iter(match=pattern))
            if keys:
                client.delete(*keys)


@pytest.fixture
def jobboard_conf(conf):
    """CONF with the jobboard enabled on a board of this test's own."""
    require_redis()
    from resize_flows import jobboard
    name = unique_board()
    conf.set_override('enabled', True, group='jobboard')
    conf.set_override('backend_url', URL, group='jobboard')
    conf.set_override('board_name', name, group='jobboard')
    conf.set_override('claim_expiry', 4, group='jobboard')
    conf.set_override('wait_poll_interval', 0.1, group='jobboard')
    jobboard.reset()
    yield conf
    jobboard.reset()
    delete_board(name)
    for opt in ('enabled', 'backend_url', 'board_name', 'claim_expiry',
                'wait_poll_interval'):
        conf.clear_override(opt, group='jobboard')
