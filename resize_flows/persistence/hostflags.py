"""A host's enabled flag and the reason it was disabled.

Kept apart from :mod:`resize_flows.persistence.repository` (which is at
the size limit); the scheduler reads the flag through
``repository.host_list_with_usage()``.
"""
import sqlalchemy as sa

from resize_flows import exception
from resize_flows.persistence import db
from resize_flows.persistence import models


def host_set_disabled(name, disabled, reason=None, keep_reason=False):
    """Disable (with ``reason``) or enable a host, in one transaction;
    return the host as it is now. Enabling clears the reason. With
    ``keep_reason``, a host that is already disabled keeps the reason it
    has (a drain does not overwrite the operator's)."""
    with db.session_scope() as s:
        host = s.scalars(db.for_update(
            sa.select(models.Host).filter_by(name=name), s)).first()
        if host is None:
            raise exception.HostNotFound(host=name)
        if not disabled:
            host.enabled, host.disabled_reason = True, None
        elif not (keep_reason and not host.enabled):
            host.enabled, host.disabled_reason = False, reason
        s.flush()
        return models.as_dict(host)
