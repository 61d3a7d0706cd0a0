"""``image cache clean`` (issue 13), through the API and the CLI: what
no instance directory uses goes, a base in use stays, and a refused
request (unknown host, not an admin) is one line, exits non-zero and
changes nothing."""
import io
import os
import subprocess
import uuid as uuid_lib

import pytest

from resize_flows import api
from resize_flows.cmd import shell
from resize_flows import exception
from resize_flows import imagestore
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import virt
from resize_flows.virt.libvirt import files as host_files
from resize_flows.virt.libvirt import imagecache
from resize_flows.virt.libvirt import layout
from tests.ssh_fixtures import machines  # noqa: F401 (fixture)
from tests.ssh_fixtures import ssh_keys  # noqa: F401 (fixture)

ADMIN = api.get_admin_context()


@pytest.fixture
def cached(conf, db_url, tmp_path):
    """Two hosts; one image in the store, cached on both; on cn2 an
    instance directory whose disk is an overlay on the cached base; a
    blank swap base on cn1 that nothing uses."""
    virt.reset()
    policy.reset()
    for name in ('cn1', 'cn2'):
        api.create_host(ADMIN, name, vcpus=4, memory_mb=4096, disk_gb=10)
    raw = tmp_path / 'disk.raw'
    raw.write_bytes(os.urandom(1 << 20))
    image = api.create_image(ADMIN, 'img', str(raw), disk_format='raw')
    store = imagestore.get_store()
    source = (host_files.for_host('image-store', store.root),
              store.path(image['uuid']))
    hosts = {}
    for name in ('cn1', 'cn2'):
        record = repository.host_get(name)
        hosts[name] = host_files.for_host(name, record['instances_path'])
        imagecache.ensure_image_base(hosts[name], image['sha256'], [source])
    imagecache.ensure_blank_base(hosts['cn1'], 'swap', 8)
    folder = os.path.join(hosts['cn2'].instances_path, str(uuid_lib.uuid4()))
    hosts['cn2'].makedir(folder)
    overlay = os.path.join(folder, layout.DISK)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    imagecache.base_path(hosts['cn2'], image['sha256']),
                    '-F', 'raw', overlay], check=True)
    hosts['cn2'].adopt(overlay)
    conf.set_override('remove_unused_minimum_age_seconds', 0,
                      group='image_cache')
    yield {'hosts': hosts, 'sha256': image['sha256']}
    virt.reset()
    conf.clear_override('remove_unused_minimum_age_seconds',
                        group='image_cache')


def _caches(cached):
    return {name: sorted(f.listdir(imagecache.base_dir(f)))
            for name, f in cached['hosts'].items()}


def test_api_cleans_what_nothing_uses(cached):
    sha = cached['sha256']
    swap = layout.swap_base_name(8)
    assert _caches(cached) == {'cn1': sorted([sha, swap]), 'cn2': [sha]}
    done = api.clean_image_cache(ADMIN, host='cn2')
    assert done == {'cn2': {'removed': [], 'bytes_freed': 0}}
    done = api.clean_image_cache(ADMIN)
    assert sorted(done) == ['cn1', 'cn2']
    assert sorted(r['base'] for r in done['cn1']['removed']) == sorted(
        [sha, swap])
    assert done['cn1']['bytes_freed'] == sum(
        r['bytes'] for r in done['cn1']['removed']) > 0
    assert done['cn2']['removed'] == []
    # The base an instance directory uses is still there.
    assert _caches(cached) == {'cn1': [], 'cn2': [sha]}


def test_api_refuses_an_unknown_host_and_a_member(cached):
    before = _caches(cached)
    with pytest.raises(exception.HostNotFound, match='nope'):
        api.clean_image_cache(ADMIN, host='nope')
    member = api.RequestContext(user_id='u', project_id='p',
                                roles=('member',))
    with pytest.raises(exception.PolicyNotAuthorized):
        api.clean_image_cache(member)
    assert _caches(cached) == before


@pytest.fixture
def rf(conf, cached, tmp_path):
    conf_file = tmp_path / 'rf.conf'
    conf_file.write_text(
        '[DEFAULT]\nstate_dir = %s\n[libvirt]\nlocal_hypervisor = test\n'
        '[image_cache]\nremove_unused_minimum_age_seconds = 0\n'
        % conf.state_dir)

    def run(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = shell.ResizeFlowsApp(stdout=out, stderr=err).run(
            ['--config-file', str(conf_file)] + list(argv))
        return code, out.getvalue(), err.getvalue()
    return run


def test_cli_prints_a_table_and_a_total(rf, cached):
    sha = cached['sha256']
    code, out, err = rf('image', 'cache', 'clean', '--host', 'cn1')
    assert code == 0, err
    lines = out.splitlines()
    rows = [ln.split('|')[1:4] for ln in lines if ln.startswith('| cn1')]
    assert sorted(r[1].strip() for r in rows) == sorted(
        [sha, layout.swap_base_name(8)])
    freed = sum(int(r[2]) for r in rows)
    assert freed > 0
    assert lines[-1] == ('Total: %d bytes freed, 2 bases removed on 1 '
                         'host' % freed)
    assert _caches(cached) == {'cn1': [], 'cn2': [sha]}
    code, out, err = rf('image', 'cache', 'clean')
    assert code == 0, err
    assert out.splitlines()[-1] == ('Total: 0 bytes freed, 0 bases '
                                    'removed on 2 hosts')


def test_cli_refuses_an_unknown_host_in_one_line(rf, cached):
    before = _caches(cached)
    code, out, err = rf('image', 'cache', 'clean', '--host', 'nope')
    assert code != 0
    assert err.strip() == 'Compute host nope could not be found.'
    code, out, err = rf('--os-roles', 'member', 'image', 'cache', 'clean')
    assert code != 0
    assert err.strip() == ("Policy doesn't allow "
                           "resize_flows:images:cache_clean to be "
                           "performed.")
    assert _caches(cached) == before


def test_a_host_that_does_not_answer_leaves_the_others_cleaned(
        rf, cached, machines):
    """Over every host, one that does not answer is reported (API:
    ``error``; CLI: one line on stderr and exit 1) and the others are
    cleaned all the same; asked for by name, it is an error."""
    machine = machines()
    machine.run('mkdir -p %s' % machine.path('i'))
    api.create_host(ADMIN, 'cn0', 4, 4096, 10, uri='test:///default',
                    instances_path=machine.path('i'), ssh=machine.address)
    machine.stop()
    sha = cached['sha256']
    code, out, err = rf('image', 'cache', 'clean', '-f', 'json')
    assert code == 1
    # (the log's INFO lines go to stderr too)
    [line] = [ln for ln in err.splitlines() if ln.startswith('not ')]
    assert line.startswith('not cleaned: cn0: Connection to the hypervisor')
    assert _caches(cached) == {'cn1': [], 'cn2': [sha]}
    with pytest.raises(exception.HypervisorUnavailable):
        api.clean_image_cache(ADMIN, host='cn0')
    done = api.clean_image_cache(ADMIN)
    assert sorted(done) == ['cn0', 'cn1', 'cn2']
    assert done['cn0']['removed'] == [] and done['cn0']['error']
