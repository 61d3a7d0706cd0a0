"""The embedding API: one function per operation, Nova's checks first.

Every operation finds the server in the caller's view (another project's
server is unknown to a non-admin: 404), checks the access rule
(:mod:`resize_flows.policy`: 403), then Nova's checks (lock, state,
flavor, scheduler: 409 or 400), before it changes anything; so a refused
request leaves the database, the hypervisors and the disks as they were,
and raises at once. A move then stores its flow, starts in the records
with one compare-and-swap transaction (which is what stops two operations
on one instance: 409 for the loser), and runs the flow: in a thread of
this process, returning at once an :class:`Operation` with the migration,
flow and request ids, or to its end with ``wait=True``. The CLI is a thin
user of these functions.

This package holds the public names only; each comes from the submodule
that does its job: :mod:`.context` (who asks, what they are told),
:mod:`.hosts` (hosts and flavors), :mod:`.drain` (empty a host),
:mod:`.images`, :mod:`.servers`,
:mod:`.ports` (the ``ports`` plugin's ports), :mod:`.moves`
(resize, migrate, confirm, revert, delete, migrations and actions) and
:mod:`.flows` (stored flows, conductors and jobs), :mod:`.audit`
(audit and repair), :mod:`.aborts` (abort a move in progress),
:mod:`.volumes` (the
``volumes`` plugin's volumes, attach and detach), :mod:`.process` (what
a process using the API does at its start and end). The operation
handles are :mod:`resize_flows.operations`'.
"""
from resize_flows.api.aborts import abort_migration
from resize_flows.api.audit import audit
from resize_flows.api.context import DETAILS_LOG
from resize_flows.api.context import get_admin_context
from resize_flows.api.context import RequestContext
from resize_flows.api.drain import drain_host
from resize_flows.api.flows import abandon_flow
from resize_flows.api.flows import list_conductors
from resize_flows.api.flows import list_flows
from resize_flows.api.flows import list_jobs
from resize_flows.api.flows import purge_flows
from resize_flows.api.flows import resume_flow
from resize_flows.api.flows import resume_interrupted
from resize_flows.api.flows import rollback_flow
from resize_flows.api.flows import show_flow
from resize_flows.api.hosts import create_flavor
from resize_flows.api.hosts import create_host
from resize_flows.api.hosts import delete_host
from resize_flows.api.hosts import disable_host
from resize_flows.api.hosts import enable_host
from resize_flows.api.hosts import get_flavor
from resize_flows.api.hosts import list_flavors
from resize_flows.api.hosts import list_hosts
from resize_flows.api.images import clean_image_cache
from resize_flows.api.images import create_image
from resize_flows.api.images import delete_image
from resize_flows.api.images import get_image
from resize_flows.api.images import list_images
from resize_flows.api.moves import confirm_expired
from resize_flows.api.moves import confirm_resize
from resize_flows.api.moves import delete_server
from resize_flows.api.moves import list_actions
from resize_flows.api.moves import list_migrations
from resize_flows.api.moves import migrate
from resize_flows.api.moves import PeriodicConfirmer
from resize_flows.api.moves import resize
from resize_flows.api.moves import revert_resize
from resize_flows.api.ports import attach_port
from resize_flows.api.ports import create_port
from resize_flows.api.ports import delete_port
from resize_flows.api.ports import detach_port
from resize_flows.api.ports import get_port
from resize_flows.api.ports import list_ports
from resize_flows.api.process import arm_configured_faults
from resize_flows.api.process import shutdown
from resize_flows.api.servers import create_server
from resize_flows.api.servers import flavor_names
from resize_flows.api.servers import get_console_output
from resize_flows.api.servers import get_hypervisor_info
from resize_flows.api.servers import get_server
from resize_flows.api.servers import list_servers
from resize_flows.api.servers import lock_server
from resize_flows.api.servers import unlock_server
from resize_flows.api.volumes import attach_volume
from resize_flows.api.volumes import create_volume
from resize_flows.api.volumes import delete_volume
from resize_flows.api.volumes import detach_volume
from resize_flows.api.volumes import get_volume
from resize_flows.api.volumes import list_volumes
from resize_flows.operations import Operation
from resize_flows.operations import PostedOperation
from resize_flows.operations import running_operations
from resize_flows.operations import wait_all

__all__ = [
    'abandon_flow', 'abort_migration', 'arm_configured_faults',
    'attach_port', 'audit', 'clean_image_cache',
    'confirm_expired', 'confirm_resize', 'create_port', 'delete_port',
    'detach_port', 'get_port', 'list_ports',
    'create_flavor', 'create_host', 'create_image', 'create_server',
    'delete_host', 'delete_image', 'delete_server', 'DETAILS_LOG',
    'disable_host', 'drain_host', 'enable_host',
    'flavor_names', 'get_admin_context', 'get_console_output', 'get_flavor',
    'get_hypervisor_info',
    'get_image', 'get_server', 'list_actions', 'list_conductors',
    'list_flavors', 'list_flows', 'list_hosts', 'list_images', 'list_jobs',
    'list_migrations', 'list_servers', 'lock_server', 'migrate', 'Operation',
    'PeriodicConfirmer', 'PostedOperation', 'purge_flows', 'RequestContext',
    'resize', 'resume_flow', 'resume_interrupted', 'revert_resize',
    'rollback_flow', 'running_operations', 'show_flow', 'shutdown',
    'unlock_server', 'wait_all',
    # The volumes plugin's.
    'attach_volume', 'create_volume', 'delete_volume', 'detach_volume',
    'get_volume', 'list_volumes',
]
