"""[compute]/resize_confirm_window: resizes nobody confirmed are."""
import datetime

import sqlalchemy as sa

from resize_flows import api
from resize_flows.persistence import db
from resize_flows.persistence import models
from resize_flows.persistence import repository
from resize_flows import states
from resize_flows.testing import state


def _backdate(migration_uuid, seconds):
    then = models.utcnow() - datetime.timedelta(seconds=seconds)
    with db.session_scope() as s:
        s.execute(sa.update(models.Migration)
                  .where(models.Migration.uuid == migration_uuid)
                  .values(updated_at=then))


#: A window no run of these tests outlasts, however busy the machine: only
#: a move backdated past it has expired.
WINDOW = 3600


def test_auto_confirm_after_the_window(cloud, conf):
    conf.set_override('resize_confirm_window', WINDOW, group='compute')
    old = cloud.server('old')['uuid']
    new = cloud.server('new')['uuid']
    old_mig = api.resize(cloud.ctx, old, 'big', wait=True).migration_uuid
    api.migrate(cloud.ctx, new, wait=True)
    _backdate(old_mig, WINDOW + 1)
    assert api.confirm_expired(cloud.ctx) == {old: 'confirmed'}
    assert repository.migration_get(old_mig)['status'] == \
        states.MIGRATION_CONFIRMED
    assert repository.instance_get(old)['vm_state'] == states.ACTIVE
    # The other one is younger than the window: it waits.
    assert repository.instance_get(new)['vm_state'] == states.RESIZED
    assert [a['action'] for a in api.list_actions(cloud.ctx, old)] == [
        'confirmResize', 'resize']
    assert state.leaks() == []


def test_window_zero_is_off(cloud, conf):
    vm = cloud.server()['uuid']
    mig = api.resize(cloud.ctx, vm, 'big', wait=True).migration_uuid
    _backdate(mig, 10 ** 6)
    assert conf.compute.resize_confirm_window == 0
    assert api.confirm_expired(cloud.ctx) == {}
    assert repository.instance_get(vm)['vm_state'] == states.RESIZED


def test_busy_or_locked_servers_are_skipped_and_reported(cloud, conf):
    conf.set_override('resize_confirm_window', 1, group='compute')
    vm = cloud.server()['uuid']
    mig = api.resize(cloud.ctx, vm, 'big', wait=True).migration_uuid
    _backdate(mig, 5)
    repository.instance_update(vm, {'task_state': states.RESIZE_REVERTING})
    outcome = api.confirm_expired(cloud.ctx)
    assert outcome[vm].startswith('InstanceInvalidState')
    assert repository.migration_get(mig)['status'] == \
        states.MIGRATION_FINISHED


def test_periodic_confirmer(cloud, conf):
    conf.set_override('resize_confirm_window', WINDOW, group='compute')
    vm = cloud.server()['uuid']
    mig = api.resize(cloud.ctx, vm, 'big', wait=True).migration_uuid
    confirmer = api.PeriodicConfirmer(interval=0.05).start()
    try:
        assert confirmer.run_once() == {}           # not expired yet
        _backdate(mig, WINDOW + 1)
        for _ in range(600):
            if repository.migration_get(mig)['status'] == \
                    states.MIGRATION_CONFIRMED:
                break
            confirmer._stop.wait(0.05)
    finally:
        confirmer.stop()
    assert repository.migration_get(mig)['status'] == \
        states.MIGRATION_CONFIRMED
    assert state.leaks() == []
