"""Choosing a destination host, as Nova's filter scheduler does.

Filters: the host is enabled and has free vCPUs, RAM and disk for the new
flavor; the source host is excluded unless the move may stay on it. Weigher:
most free RAM first (then most free vCPUs, then name, so the order is
stable). The result is a read: the capacity is taken by the claim that
follows, which checks again under a lock.
"""
from resize_flows import exception
from resize_flows.persistence import repository


def select_destinations(resources, source_host, allow_same_host=False,
                        requested_host=None):
    """Host names able to take ``resources``, best first.

    Raises ``NoValidHost`` with the reasons when there is none.
    """
    reasons = []
    candidates = []
    for host in repository.host_list_with_usage():
        name = host['name']
        if requested_host is not None and name != requested_host:
            continue
        if name == source_host and not allow_same_host:
            continue
        if not host['enabled']:
            reasons.append('%s is disabled' % name)
            continue
        # On the source host itself the old usage stays held (by the
        # migration) until confirm: the new flavor must fit beside it.
        free = host['free']
        short = [r for r in repository.RESOURCES if resources[r] > free[r]]
        if short:
            reasons.append('%s lacks %s' % (name, ', '.join(
                '%s (needs %d, free %d)' % (r, resources[r], free[r])
                for r in short)))
            continue
        candidates.append((-free['memory_mb'], -free['vcpus'], name))
    if not candidates:
        if requested_host is not None and not reasons:
            reasons.append('requested host %s is not a candidate' %
                           requested_host)
        raise exception.NoValidHost(
            reason='; '.join(reasons) or 'there is no other host.')
    return [name for _, _, name in sorted(candidates)]
