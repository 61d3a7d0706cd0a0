"""What resize-flows creates is private: the database to root, the
guests' directories and disks to root and the session user (issue 11,
item 18). Judged from the file system: modes and owners."""
import os
import stat

from resize_flows.persistence import db
from resize_flows.persistence import migration


def _mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_embedded_database_is_private(conf):
    path = db.sqlite_path()
    assert not os.path.exists(conf.state_dir)
    try:
        migration.db_sync()
        with db.get_engine().connect() as conn:
            conn.exec_driver_sql('SELECT 1')
            # -wal and -shm exist while a connection is open.
            for name in (path, path + '-wal', path + '-shm'):
                assert _mode(name) == 0o600, name
                assert os.lstat(name).st_uid == os.geteuid()
        assert _mode(conf.state_dir) & 0o066 == 0      # 0711 at most
    finally:
        db.dispose_all()


def test_database_others_could_read_is_made_private(conf):
    os.makedirs(conf.state_dir)
    path = db.sqlite_path()
    open(path, 'w').close()
    os.chmod(path, 0o644)
    try:
        migration.db_sync()
        with db.get_engine().connect() as conn:
            conn.exec_driver_sql('SELECT 1')
            for name in (path, path + '-wal', path + '-shm'):
                assert _mode(name) == 0o600, name
    finally:
        db.dispose_all()
