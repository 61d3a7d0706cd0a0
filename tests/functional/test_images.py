"""Images (issue 13): the image store, its records, the API and the CLI;
flavors' ephemeral and swap disks.

Images are made here with qemu-img (a qcow2 holding data qemu-io wrote, a
raw disk). Every refusal is one line, exits non-zero and changes nothing:
the images table and the store's directory are as they were.
"""
import hashlib
import io
import json
import os
import subprocess

import pytest
import sqlalchemy as sa

from resize_flows import api
from resize_flows.cmd import shell
from resize_flows import exception
from resize_flows import imagestore
from resize_flows.persistence import db
from resize_flows.persistence import images as image_records
from resize_flows.persistence import models
from resize_flows.persistence import repository
from resize_flows import policy


def _run(*args):
    subprocess.run(args, check=True, capture_output=True)


def _sha256(path):
    with open(path, 'rb') as f:
        return hashlib.file_digest(f, 'sha256').hexdigest()


def _same_disk(a, b):
    return subprocess.run(['qemu-img', 'compare', '-q', a, b],
                          capture_output=True).returncode == 0


@pytest.fixture
def files(tmp_path):
    """Input files: a qcow2 with data, a raw disk, a text file, a qcow2
    with a backing file, a kernel and a ramdisk."""
    d = tmp_path / 'in'
    d.mkdir()
    qcow2, raw = str(d / 'disk.qcow2'), str(d / 'disk.raw')
    _run('qemu-img', 'create', '-q', '-f', 'qcow2', qcow2, '64M')
    _run('qemu-io', '-c', 'write -P 0xab 0 1M', '-c',
         'write -P 0x5c 40M 512k', qcow2)
    _run('qemu-img', 'create', '-q', '-f', 'raw', raw, '8M')
    with open(raw, 'r+b') as f:
        f.seek(3 * 1024 * 1024)
        f.write(b'\x42' * 4096)
    overlay = str(d / 'overlay.qcow2')
    _run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', qcow2, '-F',
         'qcow2', overlay)
    (d / 'notes.txt').write_text('not a disk\n')
    (d / 'vmlinuz').write_bytes(b'kernel' * 1000)
    (d / 'initrd').write_bytes(b'ramdisk' * 1000)
    (d / 'empty').write_bytes(b'')
    return {'qcow2': qcow2, 'raw': raw, 'overlay': overlay,
            'text': str(d / 'notes.txt'), 'kernel': str(d / 'vmlinuz'),
            'ramdisk': str(d / 'initrd'), 'empty': str(d / 'empty'),
            'dir': str(d)}


def _store_listing():
    root = imagestore.get_store().root
    return sorted(os.listdir(root)) if os.path.isdir(root) else None


def _snapshot():
    """What a refused request must leave as it was."""
    return image_records.image_list(), _store_listing()


# -- the API -----------------------------------------------------------------

@pytest.fixture
def ctx(conf, db_url):
    policy.reset()
    yield api.get_admin_context()
    policy.reset()


def test_create_from_qcow2_and_raw_list_show_delete(ctx, files):
    store = imagestore.get_store()
    made = {}
    for fmt in ('qcow2', 'raw'):
        image = api.create_image(ctx, 'img-' + fmt, files[fmt])
        made[fmt] = image
        assert image['disk_format'] == fmt
        assert image['sha256'] == _sha256(files[fmt])
        assert image['size'] == os.path.getsize(files[fmt])
        stored = store.path(image['uuid'])
        assert _sha256(stored) == image['sha256']
        assert _same_disk(files[fmt], stored)
        assert os.stat(stored).st_mode & 0o777 == 0o644
        with store.open(image['uuid']) as f:
            assert hashlib.sha256(f.read()).hexdigest() == image['sha256']
    assert made['qcow2']['virtual_size'] == 64 * 1024 ** 2
    assert made['raw']['virtual_size'] == 8 * 1024 ** 2
    # A sparse raw image stays sparse in the store.
    assert os.stat(store.path(made['raw']['uuid'])).st_blocks * 512 < \
        1024 ** 2

    assert [i['name'] for i in api.list_images(ctx)] == [
        'img-qcow2', 'img-raw']
    assert api.get_image(ctx, 'img-raw') == made['raw']
    assert api.get_image(ctx, made['raw']['uuid']) == made['raw']
    # Anyone lists and shows images.
    member = api.RequestContext(user_id='u', project_id='p',
                                roles=('member',))
    assert len(api.list_images(member)) == 2
    assert api.get_image(member, 'img-qcow2')['uuid'] == \
        made['qcow2']['uuid']

    api.delete_image(ctx, 'img-raw')
    assert not store.exists(made['raw']['uuid'])
    assert [i['name'] for i in api.list_images(ctx)] == ['img-qcow2']
    assert _store_listing() == [made['qcow2']['uuid']]


def test_explicit_format_and_kernel_ramdisk(ctx, files):
    store = imagestore.get_store()
    image = api.create_image(ctx, 'kimg', files['qcow2'],
                             disk_format='qcow2', kernel=files['kernel'],
                             ramdisk=files['ramdisk'])
    for what in ('kernel', 'ramdisk'):
        assert image[what + '_sha256'] == _sha256(files[what])
        assert _sha256(store.path(image[what + '_id'])) == \
            image[what + '_sha256']
    assert len(_store_listing()) == 3
    api.delete_image(ctx, image['uuid'])
    assert _store_listing() == []


def _instance_named(image_uuid):
    """A server record that names the image (servers are not created
    from images yet: set directly)."""
    with db.session_scope() as s:
        s.add(models.Host(name='h1', uri='test:///default',
                          instances_path='/x', vcpus=1, memory_mb=1,
                          disk_gb=1))
        s.flush()
        flavor = models.Flavor(name='f', vcpus=1, memory_mb=1, root_gb=1)
        s.add(flavor)
        s.flush()
        s.add(models.Instance(uuid='vm-uses-it', name='vm', project_id='p',
                              user_id='u', host='h1', flavor_id=flavor.id,
                              vm_state='active'))
    with db.session_scope() as s:
        s.execute(sa.update(models.Instance).values(image_id=image_uuid))


def test_bad_input_changes_nothing(ctx, files):
    used = api.create_image(ctx, 'used', files['qcow2'])
    _instance_named(used['uuid'])
    member = api.RequestContext(user_id='u', project_id='p',
                                roles=('member',))
    cases = [
        (lambda: api.get_image(ctx, 'nope'), exception.ImageNotFound),
        (lambda: api.delete_image(ctx, 'nope'), exception.ImageNotFound),
        (lambda: api.create_image(ctx, 'x', files['text']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['empty']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['overlay']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['qcow2'],
                                  disk_format='raw'),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['raw'],
                                  disk_format='qcow2'),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['raw'],
                                  disk_format='vmdk'),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['raw'],
                                  kernel=files['kernel']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['raw'],
                                  ramdisk=files['ramdisk']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['raw'],
                                  kernel=files['kernel'],
                                  ramdisk=files['dir']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['dir']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'x', files['dir'] + '/missing'),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, 'used', files['raw']),
         exception.Duplicate),
        (lambda: api.create_image(ctx, 'bad\nname', files['raw']),
         exception.InvalidInput),
        (lambda: api.create_image(ctx, used['uuid'], files['raw']),
         exception.InvalidInput),
        (lambda: api.delete_image(ctx, 'used'), exception.ImageInUse),
        (lambda: api.create_image(member, 'x', files['raw']),
         exception.PolicyNotAuthorized),
        (lambda: api.delete_image(member, 'used'),
         exception.PolicyNotAuthorized),
    ]
    for call, error in cases:
        before = _snapshot()
        with pytest.raises(error) as raised:
            call()
        assert '\n' not in str(raised.value)
        assert _snapshot() == before


def test_a_copy_refused_by_its_check_leaves_nothing(conf, files):
    store = imagestore.get_store()

    def refuse(path):
        assert os.path.basename(path).endswith('.part')
        raise exception.InvalidInput(reason='no')

    with pytest.raises(exception.InvalidInput):
        store.put(files['raw'], check=refuse)
    assert os.listdir(store.root) == []
    with pytest.raises(exception.InvalidInput):
        store.put(files['dir'])
    with pytest.raises(exception.InvalidInput):
        store.path('../etc/passwd')


# -- flavors -----------------------------------------------------------------

def test_flavor_ephemeral_and_swap_by_api(ctx):
    plain = api.create_flavor(ctx, 'plain', 1, 64, 1)
    assert (plain['ephemeral_gb'], plain['swap_mb']) == (0, 0)
    big = api.create_flavor(ctx, 'big', 2, 128, 2, ephemeral_gb=3,
                            swap_mb=256)
    assert (big['ephemeral_gb'], big['swap_mb']) == (3, 256)
    assert api.get_flavor(ctx, 'big') == big
    assert api.get_flavor(ctx, str(big['id'])) == big
    # Claims count root + ephemeral + swap (256 MB: 1 GiB, rounded up).
    assert repository.flavor_resources(big)['disk_gb'] == 6
    for bad in ({'ephemeral_gb': -1}, {'swap_mb': -1}, {'swap_mb': 'x'},
                {'ephemeral_gb': 1.5}, {'ephemeral_gb': True}):
        before = repository.flavor_list()
        with pytest.raises(exception.InvalidInput):
            api.create_flavor(ctx, 'bad', 1, 64, 1, **bad)
        assert repository.flavor_list() == before
    with pytest.raises(exception.FlavorNotFound):
        api.get_flavor(ctx, 'nope')


# -- the CLI -----------------------------------------------------------------

@pytest.fixture
def rf(conf, tmp_path):
    """Run the CLI against this test's state dir; (exit code, stdout,
    stderr)."""
    conf_file = tmp_path / 'rf.conf'
    conf_file.write_text('[DEFAULT]\nstate_dir = %s\n[libvirt]\n'
                         'local_hypervisor = test\n' % conf.state_dir)
    conf.clear_override('state_dir')
    policy.reset()

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(
            ['--config-file', str(conf_file)] + list(argv))
        return code, out.getvalue(), err.getvalue()

    assert run('db', 'sync')[0] == 0
    yield run
    policy.reset()


def _json(rf, *argv):
    code, out, err = rf(*argv, '-f', 'json')
    assert code == 0, err
    return json.loads(out)


def test_cli_image_create_list_show_delete(rf, files):
    image = _json(rf, 'image', 'create', 'cirros', '--file', files['qcow2'])
    assert image['sha256'] == _sha256(files['qcow2'])
    assert image['disk_format'] == 'qcow2'
    assert _same_disk(files['qcow2'],
                      imagestore.get_store().path(image['uuid']))
    raw = _json(rf, 'image', 'create', 'blank', '--file', files['raw'],
                '--disk-format', 'raw', '--kernel', files['kernel'],
                '--ramdisk', files['ramdisk'])
    assert raw['kernel_sha256'] == _sha256(files['kernel'])
    listed = _json(rf, 'image', 'list')
    assert [(i['Name'], i['Disk Format'], i['Kernel']) for i in listed] == [
        ('blank', 'raw', True), ('cirros', 'qcow2', False)]
    assert _json(rf, 'image', 'show', image['uuid'])['name'] == 'cirros'
    assert _json(rf, 'image', 'show', 'blank')['virtual_size'] == \
        8 * 1024 ** 2
    code, out, err = rf('image', 'delete', 'blank')
    assert code == 0, err
    assert [i['Name'] for i in _json(rf, 'image', 'list')] == ['cirros']
    assert _store_listing() == [image['uuid']]


@pytest.mark.parametrize('argv, message', [
    (('image', 'show', 'nope'), 'Image nope could not be found.'),
    (('image', 'delete', 'nope'), 'Image nope could not be found.'),
    (('image', 'create', 'x', '--file', '{text}'), 'is not a disk image'),
    (('image', 'create', 'x', '--file', '{overlay}'),
     'has a backing file'),
    (('image', 'create', 'x', '--file', '{qcow2}', '--disk-format', 'raw'),
     'is qcow2, not raw'),
    (('image', 'create', 'x', '--file', '{raw}', '--disk-format', 'qcow2'),
     'is raw, not qcow2'),
    (('image', 'create', 'x', '--file', '{raw}', '--kernel', '{kernel}'),
     'give both --kernel and --ramdisk'),
    (('image', 'create', 'x', '--file', '{dir}'), 'is not a regular file'),
    (('image', 'create', 'used', '--file', '{raw}'),
     'Image used already exists.'),
    (('image', 'delete', 'used'), 'is in use by servers vm-uses-it'),
    (('--os-roles', 'member', 'image', 'create', 'x', '--file', '{raw}'),
     "Policy doesn't allow resize_flows:images:create"),
    (('flavor', 'create', 'f2', '--vcpus', '1', '--ram', '64', '--disk',
      '1', '--ephemeral', '-1'), 'ephemeral_gb must be a whole number >= 0'),
    (('flavor', 'create', 'f2', '--vcpus', '1', '--ram', '64', '--disk',
      '1', '--swap', '-1'), 'swap_mb must be a whole number >= 0'),
    (('flavor', 'show', 'nope'), 'Flavor nope could not be found.'),
])
def test_cli_bad_input_is_one_line_and_changes_nothing(rf, files, argv,
                                                       message):
    used = _json(rf, 'image', 'create', 'used', '--file', files['qcow2'])
    _instance_named(used['uuid'])
    argv = [a.format(**files) for a in argv]
    before = _snapshot(), repository.flavor_list()
    code, out, err = rf(*argv)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert message in lines[0]
    assert (_snapshot(), repository.flavor_list()) == before


def test_cli_flavor_ephemeral_and_swap(rf, capsys):
    made = _json(rf, 'flavor', 'create', 'eph', '--vcpus', '1', '--ram',
                 '64', '--disk', '1', '--ephemeral', '2', '--swap', '512')
    assert (made['ephemeral_gb'], made['swap_mb']) == (2, 512)
    assert _json(rf, 'flavor', 'show', 'eph') == made
    _json(rf, 'flavor', 'create', 'plain', '--vcpus', '1', '--ram', '64',
          '--disk', '1')
    assert [(f['Name'], f['Ephemeral'], f['Swap'])
            for f in _json(rf, 'flavor', 'list')] == [
                ('eph', 2, 512), ('plain', 0, 0)]
    before = repository.flavor_list()
    with pytest.raises(SystemExit) as e:
        rf('flavor', 'create', 'x', '--vcpus', '1', '--ram', '64', '--disk',
           '1', '--swap', 'x')
    assert e.value.code == 2
    assert "invalid int value: 'x'" in capsys.readouterr().err
    assert repository.flavor_list() == before
