"""What the cloud looks like, in one comparable value.

:func:`capture` reads the records, every host's hypervisor and every
host's instances directory and image cache (``_base``) into plain data,
so a test can take it before an operation and compare it after (a failed
operation must leave it equal), and :func:`leaks` lists what nothing
refers to. An unused cached base is not a leak: it is a cache
(``image cache clean`` removes it). The enabled plugins
(``[DEFAULT]/plugins``) count too: their records in :func:`capture`
(``Plugin.state()``), their findings in :func:`leaks`
(``Plugin.audit()``). One that is not installed is skipped and named:
``{'not installed': why}`` in place of its state, a ``not audited``
line in the leaks. What counts as a leak is
:mod:`resize_flows.audit`'s (the operator's ``audit`` command): one
definition for both.
"""
from resize_flows import audit
from resize_flows.persistence import repository

# Fields that change without meaning anything for the state of the cloud.
_VOLATILE = ('id', 'created_at', 'updated_at')


def _strip(record):
    return {k: v for k, v in record.items() if k not in _VOLATILE}


def capture(caches=True):
    """{'instances', 'allocations', 'hosts', 'plugins'}: records, each
    enabled plugin's own (``{name: plugin.state()}``), and per host its
    domains (power state, vcpus, memory), its instance directories
    (``dirs``: the root disk's virtual size and snapshots; ``files``:
    every file; see :func:`resize_flows.audit.host_state`) and its image
    cache (``base``: name and size of each file of ``_base``). With
    ``caches`` False there is no ``base``: to compare a cloud before and
    after an operation that may leave a base it fetched in a cache, as a
    rolled-back move does (a cache, not a leak)."""
    instances = {i['uuid']: _strip(i) for i in repository.instance_list()}
    allocations = sorted(
        (a['consumer_uuid'], a['consumer_type'], a['host'], a['vcpus'],
         a['memory_mb'], a['disk_gb'])
        for a in repository.allocation_list())
    hosts = {host['name']: audit.host_state(host, caches=caches)
             for host in repository.host_list()}
    loaded, missing = audit.enabled_plugins()
    found = {p.name: p.state() for p in loaded}
    found.update((name, {'not installed': why})
                 for name, why in missing.items())
    return {'instances': instances, 'allocations': allocations,
            'hosts': hosts, 'plugins': found}


def leaks():
    """Inconsistencies between records, hypervisors and disks, as sentences
    (:func:`resize_flows.audit.findings` without unfinished flows; a host
    that does not answer raises).

    Empty when: every instance has exactly one domain, on the host its
    record names, in the power state its record names; allocations are
    exactly what instances and unfinished migrations imply; no directory,
    domain or snapshot belongs to nothing; and no enabled plugin's
    ``audit()`` finds anything (each finding prefixed ``plugin NAME:``).
    """
    return [row['detail']
            for row in audit.findings(hosts=False, flows=False)]
