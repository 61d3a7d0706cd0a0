"""An image in use is never deleted, on SQLite, PostgreSQL and MariaDB.

The creation of a server that names an image and the image's delete both
lock the image's row first (``images.lock_image``). Here one of the two
holds its transaction open, the other starts in a thread and (on a
database server) is seen waiting for the lock; when the first commits,
the second must see what it did: the delete refused (ImageInUse) or the
creation refused (ImageNotFound). Without the lock the second would not
wait, and would delete an image in use or create a server on a deleted
image.
"""
import threading

import pytest
import sqlalchemy as sa

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import images
from resize_flows.persistence import models
from resize_flows.persistence import repository

IMAGE = '0b5e0c4e-2f4e-4d57-9a6b-6f1d3a1c9e01'


@pytest.fixture
def records(any_db_url):
    repository.host_create('h1', 'test:///default', '/x', 8, 4096, 40)
    flavor = repository.flavor_create('f', 1, 64, 1)
    images.image_create(uuid=IMAGE, name='img', disk_format='qcow2',
                        sha256='0' * 64, size=1, virtual_size=1)
    return flavor


def _waiting_for_a_lock(url):
    """Whether a session of this test's database waits for a lock (the
    servers are shared: other databases' sessions do not count)."""
    engine = db.get_engine(url)
    name = engine.dialect.name
    if name == 'sqlite':
        return True     # BEGIN IMMEDIATE: the other waits, or has not begun
    query = ("SELECT count(*) FROM pg_stat_activity WHERE "
             "wait_event_type = 'Lock' AND datname = current_database()"
             if name == 'postgresql' else
             "SELECT count(*) FROM information_schema.innodb_trx t JOIN "
             "information_schema.processlist p ON p.id = "
             "t.trx_mysql_thread_id WHERE t.trx_state = 'LOCK WAIT' AND "
             "p.db = DATABASE()")
    with engine.connect() as conn:
        return conn.execute(sa.text(query)).scalar() > 0


def _second(call):
    """Run ``call`` in a thread; its outcome once joined."""
    outcome = {}

    def run():
        try:
            outcome['result'] = call()
        except Exception as exc:
            outcome['error'] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _hold_until_the_second_waits(url, thread):
    while thread.is_alive() and not _waiting_for_a_lock(url):
        # Not faster: InnoDB refreshes its information_schema cache of
        # transactions only when it was not read in the last 0.1 s.
        threading.Event().wait(0.25)


def test_a_delete_waits_for_the_creation_and_is_refused(records,
                                                        any_db_url):
    with db.session_scope() as s:
        images.lock_image(s, IMAGE)
        s.add(models.Instance(uuid='vm-1', name='vm', project_id='p',
                              user_id='u', host='h1', flavor_id=records['id'],
                              vm_state='building', image_id=IMAGE))
        s.flush()
        thread, outcome = _second(lambda: images.image_destroy(IMAGE))
        _hold_until_the_second_waits(any_db_url, thread)
    thread.join()
    assert isinstance(outcome.get('error'), exception.ImageInUse), outcome
    assert [i['uuid'] for i in images.image_list()] == [IMAGE]


def test_a_creation_waits_for_the_delete_and_is_refused(records,
                                                        any_db_url):
    with db.session_scope() as s:
        images.lock_image(s, IMAGE)
        s.execute(sa.delete(models.Image).where(models.Image.uuid == IMAGE))
        thread, outcome = _second(lambda: repository.instance_create(
            'vm', 'p', 'u', 'h1', records, vm_state='building',
            image_id=IMAGE))
        _hold_until_the_second_waits(any_db_url, thread)
    thread.join()
    assert isinstance(outcome.get('error'), exception.ImageNotFound), outcome
    assert repository.instance_list() == []
    assert repository.allocation_list() == []
