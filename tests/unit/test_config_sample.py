"""The committed sample configuration is current, and config files count."""
import os

from oslo_config import generator

import tests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__)))
GENERATOR_CONF = os.path.join(
    REPO, 'etc', 'resize-flows-config-generator.conf')
SAMPLE = os.path.join(REPO, 'etc', 'resize-flows.conf.sample')


def test_sample_config_is_current(tmp_path):
    fresh = tmp_path / 'resize-flows.conf.sample'
    # Same generator conf as `make sample-config`; --output-file wins over
    # the output_file it names.
    generator.main(['--config-file', GENERATOR_CONF,
                    '--output-file', str(fresh)])
    with open(SAMPLE) as f:
        committed = f.read()
    assert fresh.read_text() == committed, (
        'etc/resize-flows.conf.sample is out of date with the options in '
        'resize_flows/conf/: run `make sample-config` and commit the result')


def test_config_file_and_dir_are_honoured(conf, tmp_path):
    config_file = tmp_path / 'resize-flows.conf'
    config_file.write_text(
        '[compute]\n'
        'allow_resize_to_same_host = true\n'
        'running_wait_timeout = 5\n')
    config_dir = tmp_path / 'resize-flows.conf.d'
    config_dir.mkdir()
    # Files in the dir are read after --config-file, so they win.
    (config_dir / '10-db.conf').write_text(
        '[compute]\n'
        'running_wait_timeout = 7\n'
        '[database]\n'
        'connection = sqlite:////tmp/from-config-dir.sqlite\n'
        '[libvirt]\n'
        'domain_type = kvm\n')
    (config_dir / 'ignored.txt').write_text(
        '[compute]\npower_poll_interval = 9\n')

    conf(['--config-file', str(config_file), '--config-dir', str(config_dir)],
         project='resize-flows', default_config_files=[],
         default_config_dirs=[])

    assert conf.compute.allow_resize_to_same_host is True
    assert conf.compute.running_wait_timeout == 7
    assert conf.database.connection == 'sqlite:////tmp/from-config-dir.sqlite'
    assert conf.libvirt.domain_type == 'kvm'
    # Only *.conf files in the dir are read.
    assert conf.compute.power_poll_interval == 0.2


def test_defaults_without_config_files(conf):
    assert conf.compute.allow_resize_to_same_host is False
    assert conf.database.connection is None


POLICY_GENERATOR_CONF = os.path.join(
    REPO, 'etc', 'resize-flows-policy-generator.conf')
POLICY_SAMPLE = os.path.join(REPO, 'etc', 'policy.yaml.sample')


def test_policy_sample_is_current(tmp_path):
    from oslo_policy import generator as policy_generator
    fresh = tmp_path / 'policy.yaml.sample'
    policy_generator.generate_sample(
        ['--config-file', POLICY_GENERATOR_CONF,
         '--output-file', str(fresh)])
    with open(POLICY_SAMPLE) as f:
        committed = f.read()
    assert fresh.read_text() == committed, (
        'etc/policy.yaml.sample is out of date with resize_flows/policy.py: '
        'run `make sample-config` and commit the result')
