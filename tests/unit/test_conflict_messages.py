"""A refused operation says what to do about the flow in its way."""
import pytest

from resize_flows import exception


@pytest.mark.parametrize('status, job, advice', [
    ('running', None, 'wait for it (resize-flows flow show f1)'),
    ('interrupted', None, 'resume it or roll it back first (resize-flows '
                          'flow resume|rollback f1)'),
    ('stuck', None, 'resume it or roll it back first'),
    ('interrupted', 'j1', 'a conductor resumes it once its claim on job j1 '
                          'expires, or roll it back (resize-flows flow '
                          'rollback f1)'),
])
def test_unfinished_flow_advice(status, job, advice):
    exc = exception.InstanceHasUnfinishedFlow(
        method='resize', instance_uuid='u1', operation='resize',
        flow_id='f1', status=status, job_uuid=job)
    assert str(exc).startswith("Cannot 'resize' instance u1: its resize "
                               "flow f1 is unfinished (%s); " % status)
    assert advice in str(exc)
    assert '%(' not in str(exc)
