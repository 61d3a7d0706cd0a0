"""What resize-flows creates is private: the database to root, the
guests' directories and disks to root and the session user (issue 11,
item 18). Judged from the file system: modes and owners."""
import os
import stat

from resize_flows import api
from resize_flows.conf import CONF
from resize_flows.persistence import db
from resize_flows.persistence import migration
from resize_flows.persistence import repository
from resize_flows import virt
from resize_flows.virt.libvirt import daemon


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


def test_a_servers_files_are_private(cloud):
    """The state directories may be entered, not listed; a host's
    directory, an instance's directory, its disk and libvirt.xml are
    their owner's only."""
    vm = cloud.server()
    drv = virt.get_driver(repository.host_get('host1'))
    folder = drv.instance_dir(vm['uuid'])
    assert _mode(CONF.state_dir) == 0o711
    assert _mode(daemon.hosts_dir()) == 0o711
    assert _mode(daemon.host_dir('host1')) == 0o700
    assert _mode(drv.instances_path) == 0o700
    assert _mode(folder) == 0o700
    for name in ('disk', 'libvirt.xml'):
        assert _mode(os.path.join(folder, name)) == 0o600, name
    assert sorted(os.listdir(folder)) == ['disk', 'disk.info', 'libvirt.xml']
    # A migration's copy too.
    api.migrate(cloud.ctx, vm['uuid'], host='host2', wait=True)
    moved = virt.get_driver(repository.host_get('host2'))
    assert _mode(moved.instance_dir(vm['uuid'])) == 0o700
    assert _mode(moved.disk_info(vm['uuid']).path) == 0o600
