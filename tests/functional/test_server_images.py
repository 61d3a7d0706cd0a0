"""Servers made from images (issue 13): the records, the API and the CLI.

A server names its image and its config drive in the transaction that
creates it; allocations count root, ephemeral and swap as Nova does; a
resize never shrinks root or ephemeral; a server's console log is read
from its host. Every refusal is one line and changes nothing: records,
flow log, hypervisors and disks are compared before and after. Hosts are
libvirt's test driver (whose spawn does not lay out images yet).
"""
import contextlib
import hashlib
import json
import os
import subprocess

import pytest

from resize_flows import api
from resize_flows.api import images as api_images
from resize_flows import exception
from resize_flows import imagestore
from resize_flows.persistence import images as image_records
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows.testing import state
from resize_flows import virt
from resize_flows.virt.libvirt import driver as libvirt_driver
from resize_flows.virt.libvirt import layout
from tests.functional import test_cli

rf = test_cli.rf                # the CLI's fixture: hosts, flavors, vm1

GiB = 1024 ** 3


def _qcow2(path, size):
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(path),
                    size], check=True, capture_output=True)
    return str(path)


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


@pytest.fixture
def made(cloud, tmp_path):
    """Two images (64 MiB and 2 GiB virtual, the second with a kernel and
    ramdisk) and flavors with ephemeral and swap disks."""
    ctx = cloud.ctx
    kernel, ramdisk = tmp_path / 'vmlinuz', tmp_path / 'initrd'
    kernel.write_bytes(b'k' * 4096)
    ramdisk.write_bytes(b'r' * 4096)
    out = {
        'small_img': api.create_image(ctx, 'small-img',
                                      _qcow2(tmp_path / 's.qcow2', '64M')),
        'big_img': api.create_image(ctx, 'big-img',
                                    _qcow2(tmp_path / 'b.qcow2', '2G'),
                                    kernel=str(kernel),
                                    ramdisk=str(ramdisk)),
    }
    for name, root, eph, swap in (('eph2', 2, 2, 1500), ('eph1', 3, 1, 0),
                                  ('root1', 1, 3, 0), ('eph3', 3, 3, 512)):
        out[name] = api.create_flavor(ctx, name, 1, 64, root,
                                      ephemeral_gb=eph, swap_mb=swap)
    return out


def everything():
    """What a refused request must leave as it was: records (servers,
    allocations, migrations, actions, images), the flow log, and the
    hosts' domains, directories and disks."""
    ctx = api.get_admin_context()
    servers = repository.instance_list()
    return {
        'cloud': state.capture(),
        'servers': servers,
        'allocations': repository.allocation_list(),
        'migrations': repository.migration_list(),
        'actions': [api.list_actions(ctx, s['uuid']) for s in servers],
        'flows': api.list_flows(ctx),
        'images': image_records.image_list(),
        'store': _listing(imagestore.get_store().root),
    }


@contextlib.contextmanager
def bare_path(tmp_path):
    """A PATH with no genisoimage (nor anything else) while it lasts."""
    saved = os.environ['PATH']
    os.environ['PATH'] = str(tmp_path)
    try:
        yield
    finally:
        os.environ['PATH'] = saved


def _listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


def refused(call, error):
    """``call()`` raises ``error``, in one line, and changes nothing."""
    before = everything()
    with pytest.raises(error) as raised:
        call()
    assert '\n' not in str(raised.value)
    assert everything() == before
    return str(raised.value)


@pytest.fixture
def spawned(monkeypatch):
    """The keyword arguments each spawn of the libvirt driver was given
    (the call goes on to the real driver)."""
    calls = []
    real = libvirt_driver.LibvirtDriver.spawn

    def spawn(self, instance, flavor, power_on=True, **kwargs):
        calls.append(dict(kwargs, flavor=flavor))
        return real(self, instance, flavor, power_on=power_on, **kwargs)

    monkeypatch.setattr(libvirt_driver.LibvirtDriver, 'spawn', spawn)
    return calls


# -- create ------------------------------------------------------------------

def test_create_from_an_image_with_a_config_drive(cloud, made, spawned):
    image = made['big_img']
    inst = api.create_server(cloud.ctx, 'vm1', 'eph3', 'host1',
                             image='big-img', config_drive=True)
    assert (inst['image_id'], inst['config_drive']) == (image['uuid'], True)
    assert inst['vm_state'] == 'active'
    store = imagestore.get_store()
    assert spawned == [{
        'image': {
            'uuid': image['uuid'], 'sha256': image['sha256'],
            'disk_format': 'qcow2', 'virtual_size': 2 * GiB,
            'path': store.path(image['uuid']),
            'kernel_path': store.path(image['kernel_id']),
            'ramdisk_path': store.path(image['ramdisk_id']),
            'kernel_sha256': image['kernel_sha256'],
            'ramdisk_sha256': image['ramdisk_sha256']},
        'config_drive': True,
        'plugin_devices': {},       # no plugin enabled
        'flavor': {'name': 'eph3', 'vcpus': 1, 'memory_mb': 64,
                   'root_gb': 3, 'ephemeral_gb': 3, 'swap_mb': 512}}]
    # The paths the driver is given are the store's files themselves.
    given = spawned[0]['image']
    assert _sha256(given['path']) == image['sha256']
    assert _sha256(given['kernel_path']) == image['kernel_sha256']
    # By uuid too; without --config-drive, none; without an image, none.
    by_uuid = api.create_server(cloud.ctx, 'vm2', 'small', 'host1',
                                image=made['small_img']['uuid'])
    assert (by_uuid['image_id'], by_uuid['config_drive']) == (
        made['small_img']['uuid'], False)
    assert spawned[1]['image']['kernel_path'] is None
    assert spawned[1]['image']['ramdisk_sha256'] is None
    blank = cloud.server('vm3')
    assert (blank['image_id'], blank['config_drive']) == (None, False)
    assert spawned[2]['image'] is None
    assert state.leaks() == []


def test_allocations_count_root_ephemeral_and_swap(cloud, made):
    inst = api.create_server(cloud.ctx, 'vm1', 'eph2', 'host1',
                             image='small-img')
    # 2 root + 2 ephemeral + 1500 MB swap rounded up to 2 GiB.
    assert [(a['consumer_uuid'], a['disk_gb'])
            for a in repository.allocation_list()] == [(inst['uuid'], 6)]
    assert repository.flavor_resources(
        {'vcpus': 1, 'memory_mb': 1, 'root_gb': 1, 'ephemeral_gb': 0,
         'swap_mb': 1024})['disk_gb'] == 2
    assert repository.flavor_resources(
        {'vcpus': 1, 'memory_mb': 1, 'root_gb': 1, 'ephemeral_gb': 0,
         'swap_mb': 1025})['disk_gb'] == 3
    assert state.leaks() == []
    # A move holds the old flavor's disk on the source, the new one's on
    # the destination, and leaks() expects just that.
    api.resize(cloud.ctx, 'vm1', 'eph3', wait=True)
    mig, = repository.migration_list()
    want = [(mig['uuid'], 'host1', 6), (inst['uuid'], mig['dest_compute'], 7)]
    assert sorted((a['consumer_uuid'], a['host'], a['disk_gb'])
                  for a in repository.allocation_list()) == sorted(want)
    assert state.leaks() == []
    api.confirm_resize(cloud.ctx, 'vm1', wait=True)
    assert [a['disk_gb'] for a in repository.allocation_list()] == [7]
    assert state.leaks() == []


def test_create_refusals_change_nothing(cloud, made, tmp_path):
    cloud.server('vm0')
    message = refused(lambda: api.create_server(
        cloud.ctx, 'vm1', 'small', 'host1', image='nope'),
        exception.ImageNotFound)
    assert message == 'Image nope could not be found.'
    # 2 GiB of image on a 1 GiB root disk, as Nova refuses it.
    message = refused(lambda: api.create_server(
        cloud.ctx, 'vm1', 'root1', 'host1', image='big-img'),
        exception.FlavorDiskSmallerThanImage)
    assert 'root1' in message and 'big-img' in message
    # Without the host named: refused before the scheduler too.
    refused(lambda: api.create_server(cloud.ctx, 'vm1', 'small',
                                      image='big-img'),
            exception.FlavorDiskSmallerThanImage)
    # A config drive without genisoimage on this machine, checked before
    # anything else, even an unknown flavor.
    for flavor in ('small', 'nope'):
        def create():
            with bare_path(tmp_path):
                api.create_server(cloud.ctx, 'vm1', flavor, 'host1',
                                  config_drive=True)
        message = refused(create, exception.ConfigDriveUnavailable)
        assert message == ('A config drive needs genisoimage, which is not '
                           'installed on this machine.')


def test_an_image_deleted_meanwhile_fails_the_create(cloud, made,
                                                     monkeypatch):
    """The image is found, then deleted before the server's record is
    written: the transaction that writes it fails, nothing is left."""
    real = api_images.get_image

    def get_then_delete(ctx, ident):
        found = real(ctx, ident)
        image_records.image_destroy(found['uuid'])
        return found

    monkeypatch.setattr(api_images, 'get_image', get_then_delete)
    before = everything()
    with pytest.raises(exception.ImageNotFound):
        api.create_server(cloud.ctx, 'vm1', 'small', 'host1',
                          image='small-img')
    after = everything()
    assert after['images'] == [i for i in before['images']
                               if i['name'] != 'small-img']
    for key in ('cloud', 'servers', 'allocations', 'flows'):
        assert after[key] == before[key]


def test_an_image_in_use_is_not_deleted(cloud, made):
    inst = api.create_server(cloud.ctx, 'vm1', 'small', 'host1',
                             image='small-img')
    message = refused(lambda: api.delete_image(cloud.ctx, 'small-img'),
                      exception.ImageInUse)
    assert inst['uuid'] in message
    api.delete_server(cloud.ctx, 'vm1')
    api.delete_image(cloud.ctx, 'small-img')
    assert [i['name'] for i in api.list_images(cloud.ctx)] == ['big-img']


def test_the_image_lock_refuses_a_deleted_image(cloud, made):
    """The repository's own check, inside the creating transaction."""
    image = made['small_img']
    api.delete_image(cloud.ctx, image['uuid'])
    flavor = repository.flavor_get('small')
    before = everything()
    with pytest.raises(exception.ImageNotFound):
        repository.instance_create('vm', 'p', 'u', 'host1', flavor,
                                   vm_state='building',
                                   image_id=image['uuid'])
    assert everything() == before


# -- resize ------------------------------------------------------------------

@pytest.mark.parametrize('flavor, disk', [('eph1', 'ephemeral'),
                                          ('root1', 'root')])
def test_resize_never_shrinks_root_or_ephemeral(cloud, made, flavor, disk):
    api.create_server(cloud.ctx, 'vm1', 'eph2', 'host1', image='small-img')
    message = refused(lambda: api.resize(cloud.ctx, 'vm1', flavor,
                                         wait=True),
                      exception.CannotResizeDisk)
    assert 'smaller %s disk' % disk in message
    assert exception.CannotResizeDisk.code == 400


def test_resize_to_bigger_disks_is_allowed(cloud, made):
    api.create_server(cloud.ctx, 'vm1', 'eph2', 'host1')
    api.resize(cloud.ctx, 'vm1', 'eph3', wait=True)
    inst = api.get_server(cloud.ctx, 'vm1')
    assert (inst['vm_state'], inst['new_flavor_id']) == (
        'resized', made['eph3']['id'])


# -- console -----------------------------------------------------------------

def _console_path(inst):
    drv = virt.get_driver(repository.host_get(inst['host']))
    return os.path.join(drv.instance_dir(inst['uuid']), layout.CONSOLE_LOG)


def test_console_output(cloud, made, policy_deny):
    inst = cloud.server('vm1')
    ctx = cloud.ctx
    assert api.get_console_output(ctx, 'vm1') == ''
    text = 'boot\n\x1b[0mvcpus=1\nmem=64\nno newline at the end'
    with open(_console_path(inst), 'w') as f:
        f.write(text)
    assert api.get_console_output(ctx, 'vm1') == text
    assert api.get_console_output(ctx, inst['uuid'], lines=2) == \
        'mem=64\nno newline at the end'
    assert api.get_console_output(ctx, 'vm1', lines=0) == ''
    assert api.get_console_output(ctx, 'vm1', lines=99) == text
    # The owner may read it; another project does not see the server.
    assert api.get_console_output(cloud.member(), 'vm1') == text
    refused(lambda: api.get_console_output(cloud.member('other'), 'vm1'),
            exception.InstanceNotFound)
    refused(lambda: api.get_console_output(ctx, 'vm1', lines=-1),
            exception.InvalidInput)
    policy_deny('os_compute_api:os-console-output')
    refused(lambda: api.get_console_output(cloud.member(), 'vm1'),
            exception.PolicyNotAuthorized)


def test_console_log_that_is_a_link_is_not_followed(cloud, tmp_path):
    inst = cloud.server('vm1')
    secret = tmp_path / 'secret'
    secret.write_text('not the guest\'s\n')
    os.symlink(secret, _console_path(inst))
    message = refused(lambda: api.get_console_output(cloud.ctx, 'vm1'),
                      exception.DiskError)
    assert 'not the guest' not in message


@pytest.fixture
def policy_deny(conf, tmp_path):
    def deny(rule):
        path = tmp_path / 'policy.yaml'
        path.write_text('"%s": "!"\n' % rule)
        conf.set_override('policy_file', str(path), group='oslo_policy')
        policy.reset()

    yield deny
    conf.clear_override('policy_file', group='oslo_policy')
    policy.reset()


# -- the CLI -----------------------------------------------------------------

def _json(rf, *argv):
    code, out, err = rf(*argv, '-f', 'json')
    assert code == 0, err
    return json.loads(out)


def _cli_refused(rf, argv, message, path=None):
    before = everything()
    with bare_path(path) if path else contextlib.nullcontext():
        got, out, err = rf(*argv)
    assert got != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert 'Traceback' not in err
    assert everything() == before


@pytest.fixture
def cli_image(rf, tmp_path):
    _json(rf, 'image', 'create', 'img', '--file',
          _qcow2(tmp_path / 'i.qcow2', '64M'))
    _json(rf, 'image', 'create', 'huge', '--file',
          _qcow2(tmp_path / 'h.qcow2', '3G'))
    return rf


def test_cli_create_and_show_with_an_image(cli_image):
    rf = cli_image
    made = _json(rf, 'server', 'create', 'vm2', '--flavor', 'tiny',
                 '--image', 'img', '--config-drive', '--stopped',
                 '--host', 'host2')
    assert (made['image'], made['config_drive'], made['host'],
            made['power_state']) == ('img', True, 'host2', 'Shutdown')
    shown = _json(rf, 'server', 'show', 'vm2')
    assert (shown['image'], shown['config_drive']) == ('img', True)
    # The server made without one (by the fixture).
    shown = _json(rf, 'server', 'show', 'vm1')
    assert (shown['image'], shown['config_drive']) == (None, False)
    code, out, err = rf('server', 'create', '--help')
    assert '--image' in out and '--config-drive' in out


def test_cli_show_names_an_image_it_may_not_see_by_uuid(cli_image,
                                                        policy_deny):
    rf = cli_image
    made = _json(rf, 'server', 'create', 'vm2', '--flavor', 'tiny',
                 '--image', 'img', '--host', 'host2')
    image = _json(rf, 'image', 'show', 'img')
    policy_deny('resize_flows:images:show')
    assert _json(rf, 'server', 'show', 'vm2')['image'] == image['uuid']
    assert [s['Name'] for s in _json(rf, 'server', 'list')] == [
        'vm1', 'vm2']
    assert made['image'] == 'img'


@pytest.mark.parametrize('argv, message', [
    (('server', 'create', 'vm2', '--flavor', 'tiny', '--image', 'nope'),
     'Image nope could not be found.'),
    (('server', 'create', 'vm2', '--flavor', 'small', '--image', 'huge'),
     "Flavor small's disk is too small for image huge"),
    (('server', 'console', 'log', 'nope'),
     'Instance nope could not be found.'),
    (('server', 'console', 'log', 'vm1', '--lines', '-2'),
     '--lines must be >= 0'),
    (('--os-project-id', 'other', '--os-roles', 'member', 'server',
      'console', 'log', 'vm1'), 'Instance vm1 could not be found.'),
])
def test_cli_bad_input_is_one_line_and_changes_nothing(cli_image, argv,
                                                       message):
    _cli_refused(cli_image, argv, message)


def test_cli_config_drive_without_genisoimage(cli_image, tmp_path):
    _cli_refused(cli_image, ('server', 'create', 'vm2', '--flavor', 'tiny',
                             '--config-drive'),
                 'A config drive needs genisoimage', path=tmp_path)


def test_cli_resize_to_a_smaller_ephemeral_disk(rf):
    for name, eph in (('e2', '2'), ('e1', '1')):
        _json(rf, 'flavor', 'create', name, '--vcpus', '1', '--ram', '64',
              '--disk', '1', '--ephemeral', eph)
    _json(rf, 'server', 'create', 'vm2', '--flavor', 'e2', '--host', 'host1')
    _cli_refused(rf, ('server', 'resize', 'vm2', '--flavor', 'e1'),
                 'smaller ephemeral disk (1 GB)')


def test_cli_console_log(rf, capsys):
    inst = repository.instance_find('vm1')
    code, out, err = rf('server', 'console', 'log', 'vm1')
    assert (code, out) == (0, '')
    with open(_console_path(inst), 'w') as f:
        f.write('one\ntwo\nthree\n')
    code, out, err = rf('server', 'console', 'log', 'vm1')
    assert (code, out) == (0, 'one\ntwo\nthree\n')
    code, out, err = rf('server', 'console', 'log', inst['uuid'],
                        '--lines', '2')
    assert (code, out) == (0, 'two\nthree\n')
    # A member of the server's project reads it too.
    code, out, err = rf('--os-roles', 'member', 'server', 'console', 'log',
                        'vm1', '--lines', '1')
    assert (code, out) == (0, 'three\n')
    with pytest.raises(SystemExit) as e:
        rf('server', 'console', 'log', 'vm1', '--lines', 'x')
    assert e.value.code == 2
    assert "invalid int value: 'x'" in capsys.readouterr().err
