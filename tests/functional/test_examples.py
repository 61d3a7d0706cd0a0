"""The embedding guide's example runs (on libvirt's test driver)."""
import os
import subprocess
import sys

import tests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(tests.__file__)))


def test_embed_example_runs(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, 'examples', 'embed.py')],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'resize SUCCESS: migration finished on compute-2' in out
    assert 'bob (another project) confirms -> 404 InstanceNotFound' in out
    assert 'alice migrates (admin only) -> 403 PolicyNotAuthorized' in out
    assert '-> 409 InstanceInvalidState' in out
    assert 'notification: instance.resize_finish.end' in out
    assert 'notification: instance.resize_confirm.end' in out
    assert out.rstrip().endswith('web-1 is active on compute-2')
