"""[jobboard]/backend_url into TaskFlow's jobboard configuration."""
import pytest

from resize_flows import exception
from resize_flows import jobboard


def test_the_default_is_the_local_redis(conf):
    assert jobboard.board_conf() == {
        'board': 'redis', 'host': '127.0.0.1', 'port': 6379,
        'namespace': 'resize-flows'}


def test_a_redis_url_with_password_db_and_tls(conf):
    assert jobboard.board_conf('rediss://:s%40cret@redis.example:6380/2',
                               'b1') == {
        'board': 'redis', 'host': 'redis.example', 'port': 6380,
        'namespace': 'b1', 'password': 's@cret', 'db': 2, 'ssl': True}


def test_zookeeper_and_etcd_go_to_taskflows_own_boards(conf):
    assert jobboard.board_conf('zookeeper://zk1:2181,zk2:2181', 'b') == {
        'board': 'zookeeper', 'hosts': 'zk1:2181,zk2:2181',
        'path': '/taskflow/jobs/b'}
    assert jobboard.board_conf('etcd://e1:2379', 'b')['board'] == 'etcd'


def test_another_scheme_is_refused(conf):
    with pytest.raises(exception.InvalidInput):
        jobboard.board_conf('amqp://x', 'b')


def test_a_conductor_name_is_unique_per_process(conf):
    conf.set_override('conductor_name', 'c1', group='jobboard')
    try:
        first, second = jobboard.conductor_name(), jobboard.conductor_name()
    finally:
        conf.clear_override('conductor_name', group='jobboard')
    assert first.startswith('c1:') and second.startswith('c1:')
    assert first != second
