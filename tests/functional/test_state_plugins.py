"""testing.state with a plugin named in [DEFAULT]/plugins that is not
installed: capture() and leaks() skip it and name it, instead of
raising, and still cover the plugins that are installed."""
import os

from resize_flows import api
from resize_flows.testing import state


def test_a_plugin_that_is_not_installed_is_skipped_and_named(cloud, conf):
    vm = cloud.server()['uuid']
    conf.set_override('plugins', ['volumes', 'ghost'])
    try:
        vol = api.create_volume(cloud.ctx, 'data', 1)
        api.attach_volume(cloud.ctx, vm, 'data')
        snap = state.capture()
        assert sorted(snap['plugins']) == ['ghost', 'volumes']
        [why] = snap['plugins']['ghost'].values()
        assert list(snap['plugins']['ghost']) == ['not installed']
        assert 'ghost' in why and '\n' not in why
        assert snap['plugins']['volumes']['attachments'] == [
            (vol['id'], vm, 'host1', True)]
        assert state.capture() == snap
        assert state.leaks() == ['plugin ghost: not audited: %s' % why]

        # The installed plugin is still audited: its volume's file gone.
        os.unlink(vol['path'])
        found = state.leaks()
        assert found[-1] == 'plugin ghost: not audited: %s' % why
        assert any(f.startswith('plugin volumes: volume %s' % vol['id'])
                   for f in found[:-1]), found
    finally:
        conf.clear_override('plugins')
