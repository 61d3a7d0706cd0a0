"""A small cloud on libvirt's test driver: two hosts, three flavors."""
import pytest

from resize_flows import api
from resize_flows import notifications
from resize_flows import policy
from resize_flows.testing import faults
from resize_flows.testing import notifier
from resize_flows import virt


class Cloud:
    def __init__(self):
        self.host1 = api.create_host(self.ctx, 'host1', 8, 4096, 40)
        self.host2 = api.create_host(self.ctx, 'host2', 8, 4096, 40)
        self.small = api.create_flavor(self.ctx, 'small', 1, 64, 1)
        self.big = api.create_flavor(self.ctx, 'big', 2, 128, 2)
        self.tiny_disk = api.create_flavor(self.ctx, 'tinydisk', 1, 64, 0)

    @property
    def ctx(self):
        """A new request's context each time, as a REST front makes one."""
        return api.get_admin_context()

    def server(self, name='vm1', flavor='small', host='host1',
               power_on=True):
        return api.create_server(self.ctx, name, flavor, host,
                                 power_on=power_on)


    def member(self, project='admin', user='member'):
        """A non-admin request context of ``project``."""
        return api.RequestContext(user_id=user, project_id=project,
                                  roles=('member', 'reader'))


@pytest.fixture
def cloud(conf, db_url):
    virt.reset()
    faults.clear()
    policy.reset()
    notifications.reset()
    notifier.clear()
    yield Cloud()
    # Flows started in the background end before their hosts go.
    api.wait_all()
    faults.clear()
    policy.reset()
    notifications.reset()
    virt.reset()
