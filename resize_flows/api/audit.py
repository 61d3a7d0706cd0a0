"""Audit and repair (``resize-flows audit``): the records against every
host's hypervisor and disks, see :mod:`resize_flows.audit`; admin only."""
from resize_flows.api import context
from resize_flows import audit as rf_audit
from resize_flows.persistence import repository
from resize_flows import policy
from resize_flows import validation


@context.tenant_facing
def audit(ctx, host=None, repair=False):
    """What does not match between the records and the hosts (every
    host, or ``host``), as rows {'kind', 'host', 'object', 'detail',
    'fix'}; a host that does not answer is a row of its own, and the
    audit goes on with the others. With ``repair`` the safe classes
    (allocations, recorded power states, ``_resize``/``_revert``
    directories of moves that ended) are fixed and their ``fix`` says
    ``repaired``; each repair on an instance is recorded as its instance
    action ``audit_repair``. An unknown host is HostNotFound, nothing
    read."""
    policy.authorize(ctx, policy.AUDIT, policy.every_project())
    if host is not None:
        validation.check_host_name(host)
        repository.host_get(host)
    rows = rf_audit.findings(host=host)
    if repair:
        rf_audit.repair(rows, ctx.request_id, ctx.user_id, ctx.project_id)
    return rf_audit.public(rows)
