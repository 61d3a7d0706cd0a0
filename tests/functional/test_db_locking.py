"""SQLite: reads never wait for the write lock; a write that cannot get it
in time, and a database file that cannot be used, give one line."""
import contextlib
import os
import signal
import subprocess
import sys

import pytest

from resize_flows.persistence import repository
from resize_flows.testing import databases
from resize_flows.testing import state
from tests.functional.test_cli import rf  # noqa: F401  (the fixture)

HOLDER = r'''
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute('BEGIN IMMEDIATE')
conn.execute("UPDATE hosts SET enabled = enabled")
print('held', flush=True)
sys.stdin.read()            # until the test closes our stdin
conn.execute('ROLLBACK')
'''


@contextlib.contextmanager
def write_lock_held(path, stopped=False):
    """Another process holds the database's write lock (an open write
    transaction) inside the block; with ``stopped``, it is SIGSTOPped
    while it holds it."""
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, str(path)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == 'held'
        if stopped:
            os.kill(proc.pid, signal.SIGSTOP)
        yield proc
    finally:
        if stopped:
            os.kill(proc.pid, signal.SIGCONT)
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


@pytest.fixture
def short_wait(tmp_path):
    """Global options of a config file that makes writes wait 0.2 s."""
    extra = tmp_path / 'busy.conf'
    extra.write_text('[database]\nsqlite_busy_timeout = 0.2\n')
    return ('--config-file', str(extra))


def _before():
    return (state.capture(), repository.host_list(),
            repository.flavor_list(), repository.instance_list(),
            repository.migration_list())


@pytest.mark.parametrize('stopped', [False, True],
                         ids=['busy-holder', 'stopped-holder'])
def test_reads_pass_a_held_write_lock_and_writes_fail_in_one_line(
        rf, tmp_path, short_wait, stopped):  # noqa: F811
    path = tmp_path / 'cli-state' / 'resize-flows.sqlite'
    before = _before()
    hosts_dir = tmp_path / 'cli-state' / 'hosts'
    hosts = sorted(os.listdir(hosts_dir))
    with write_lock_held(path, stopped=stopped):
        for argv in (('server', 'list'), ('server', 'show', 'vm1'),
                     ('flavor', 'list'), ('host', 'list'),
                     ('flow', 'list'), ('server', 'migration', 'list'),
                     ('db', 'version')):
            code, out, err = rf(*short_wait, *argv)
            assert (code, err) == (0, ''), argv
        assert 'vm1' in rf(*short_wait, 'server', 'list', '-f',
                           'value')[1]
        for argv in (('flavor', 'create', 'f9', '--vcpus', '1', '--ram',
                      '64', '--disk', '1'),
                     ('host', 'create', 'h9', '--vcpus', '1',
                      '--memory-mb', '1', '--disk-gb', '1'),
                     ('server', 'lock', 'vm1'),
                     ('server', 'resize', 'vm1', '--flavor', 'small')):
            code, out, err = rf(*short_wait, *argv)
            assert code != 0, argv
            lines = err.strip().splitlines()
            assert lines == ['Database %s is locked: another process has '
                             'held its write lock for more than 0.2 s '
                             '(database is locked); try again' % path], argv
        # The refused host create left no directory behind.
        assert sorted(os.listdir(hosts_dir)) == hosts
    assert _before() == before
    # The lock was the only reason.
    code, out, err = rf(*short_wait, 'flavor', 'create', 'f9', '--vcpus',
                        '1', '--ram', '64', '--disk', '1')
    assert code == 0, err


def _garbage(path):
    path.write_bytes(b'this is not an SQLite database' * 400)


def _directory(path):
    path.mkdir()


@pytest.mark.parametrize('spoil, cause', [
    (_garbage, 'the file is not an SQLite database'),
    (_directory, 'cannot open or create the file'),
])
def test_a_broken_database_file_is_one_line_naming_it(
        rf, tmp_path, spoil, cause):  # noqa: F811
    path = tmp_path / 'cli-state' / 'resize-flows.sqlite'
    for suffix in ('', '-wal', '-shm'):
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / 'cli-state' / ('resize-flows.sqlite' + suffix)
             ).unlink()
    # This process's pooled connections have the old file open.
    databases.forget_engines()
    spoil(path)
    hosts = sorted(os.listdir(tmp_path / 'cli-state' / 'hosts'))
    for argv in (('server', 'list'), ('flow', 'list'), ('db', 'sync'),
                 ('host', 'create', 'h9', '--vcpus', '1', '--memory-mb',
                  '1', '--disk-gb', '1'),
                 ('server', 'resize', 'vm1', '--flavor', 'small')):
        code, out, err = rf(*argv)
        assert code != 0
        assert err.strip().splitlines() == [
            'Database %s: %s' % (path, err.split(': ', 1)[1].strip())]
        assert cause in err
        assert 'SELECT' not in err and 'Traceback' not in err
    assert sorted(os.listdir(tmp_path / 'cli-state' / 'hosts')) == hosts


def test_a_state_dir_that_is_a_file_is_one_line(rf, tmp_path):  # noqa: F811
    state_file = tmp_path / 'not-a-dir'
    state_file.write_text('')
    conf = tmp_path / 'file-state.conf'
    conf.write_text('[DEFAULT]\nstate_dir = %s\n' % state_file)
    code, out, err = rf('--config-file', str(conf), 'server', 'list')
    assert code != 0
    assert err.strip().splitlines() == [
        'Database %s/resize-flows.sqlite: cannot make its directory %s: '
        'File exists' % (state_file, state_file)]
