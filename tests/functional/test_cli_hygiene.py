"""Input hygiene of the resize-flows command: quiet moves, names, numbers,
options and broken databases give one line and change nothing."""
import pytest

from resize_flows.persistence import repository
from resize_flows.testing import state
from tests.functional.test_cli import rf  # noqa: F401  (the fixture)


@pytest.mark.parametrize('argv', [
    ('server', 'resize', 'vm1', '--flavor', 'small', '-q'),
    ('server', 'resize', 'vm1', '--flavor', 'small', '--quiet'),
    ('-q', 'server', 'migrate', 'vm1'),
    ('server', 'migrate', '--quiet', 'vm1'),
])
def test_quiet_moves_print_no_tasks(rf, argv):  # noqa: F811
    code, out, err = rf(*argv)
    assert code == 0, err
    assert err == ''
    assert 'finished' in out
