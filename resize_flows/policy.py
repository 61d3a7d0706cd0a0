"""Access rules, oslo.policy style: defaults in code, a policy file wins.

Every rule is a ``DocumentedRuleDefault`` below; a policy file
(``[oslo_policy]/policy_file``, by default ``policy.yaml`` in the config
directories, e.g. ``/etc/resize-flows/policy.yaml``) overrides any of
them. ``oslopolicy-sample-generator --namespace resize_flows`` writes them
all out; ``oslopolicy-policy-generator`` and ``oslopolicy-checker`` work
through the ``oslo.policy.enforcer`` entry point.

The rules follow Nova's: resize, confirm and revert belong to a member of
the server's project or an admin (``admin_or_owner``); cold migration, with
or without a target host, to an admin; undoing an admin's lock, to an
admin (``unlock_override``). Images are public, as Glance's public
images: anyone lists and shows them, an admin adds and deletes them.
Volumes (the ``volumes`` plugin) belong to a project: its members and an
admin create, show, delete, attach and detach them. Ports (the ``ports``
plugin) belong to a project, as Neutron's: its members and admins create,
see, delete them, and attach them to the project's servers. A flow's
resume and rollback are operator
work: admin; so is listing the jobboard's conductors and jobs. Every rule
on a server or a flow is checked against the project of that server (a
flow's is kept when its server is deleted); a rule over every project
(purging flows, listing every project's flows, conductors and jobs) is
checked against a project that is nobody's, so that ``admin_or_owner``
there means an admin. The API checks a rule after it has found the server
in the caller's view (another project's server is unknown to a non-admin:
404, not 403) and before anything else, so a refused request changes
nothing and says 403 (:class:`~resize_flows.exception.PolicyNotAuthorized`).
"""
import threading
import uuid as uuidlib

from oslo_policy import policy

from resize_flows.conf import CONF
from resize_flows import exception

ADMIN = 'rule:context_is_admin'
ADMIN_OR_OWNER = 'rule:admin_or_owner'

SERVERS = 'os_compute_api:servers:%s'
CREATE_FORCED_HOST = SERVERS % 'create:forced_host'
DELETE = SERVERS % 'delete'
RESIZE = SERVERS % 'resize'
CONFIRM_RESIZE = SERVERS % 'confirm_resize'
REVERT_RESIZE = SERVERS % 'revert_resize'
MIGRATE = 'os_compute_api:os-migrate-server:migrate'
MIGRATE_HOST = 'os_compute_api:os-migrate-server:migrate:host'
LOCK = 'os_compute_api:os-lock-server:lock'
UNLOCK = 'os_compute_api:os-lock-server:unlock'
UNLOCK_OVERRIDE = 'os_compute_api:os-lock-server:unlock:unlock_override'
CONSOLE_OUTPUT = 'os_compute_api:os-console-output'
CONFIRM_EXPIRED = 'resize_flows:servers:confirm_expired'
FLOW_LIST = 'resize_flows:flows:list'
FLOW_SHOW = 'resize_flows:flows:show'
FLOW_RESUME = 'resize_flows:flows:resume'
FLOW_ROLLBACK = 'resize_flows:flows:rollback'
FLOW_PURGE = 'resize_flows:flows:purge'
FLOW_ABANDON = 'resize_flows:flows:abandon'
AUDIT = 'resize_flows:audit'
CONDUCTOR_LIST = 'resize_flows:conductors:list'
JOB_LIST = 'resize_flows:jobs:list'
HOST_MANAGE = 'resize_flows:hosts:manage'
HOST_DRAIN = 'resize_flows:hosts:drain'
FLAVOR_MANAGE = 'resize_flows:flavors:manage'
IMAGE_CREATE = 'resize_flows:images:create'
IMAGE_DELETE = 'resize_flows:images:delete'
IMAGE_LIST = 'resize_flows:images:list'
IMAGE_SHOW = 'resize_flows:images:show'
IMAGE_CACHE_CLEAN = 'resize_flows:images:cache_clean'
VOLUME_CREATE = 'resize_flows:volumes:create'
VOLUME_LIST = 'resize_flows:volumes:list'
VOLUME_SHOW = 'resize_flows:volumes:show'
VOLUME_DELETE = 'resize_flows:volumes:delete'
VOLUME_ATTACH = 'os_compute_api:os-volumes-attachments:create'
VOLUME_DETACH = 'os_compute_api:os-volumes-attachments:delete'
PORTS = 'resize_flows:ports:%s'
MIGRATION_ABORT = 'os_compute_api:servers:migrations:delete'
PORT_CREATE = PORTS % 'create'
PORT_LIST = PORTS % 'list'
PORT_SHOW = PORTS % 'show'
PORT_DELETE = PORTS % 'delete'
PORT_ATTACH = 'resize_flows:servers:port_attach'
PORT_DETACH = 'resize_flows:servers:port_detach'
#: Anyone (an empty rule passes every caller).
ANYONE = '@'

_BASE = [
    policy.RuleDefault(
        'context_is_admin', 'role:admin',
        description='Who counts as a cloud administrator.'),
    policy.RuleDefault(
        'admin_or_owner', 'rule:context_is_admin or project_id:%(project_id)s',
        description='An administrator, or a member of the project that owns '
                    'the target server.'),
]


def _rule(name, check_str, description, method, path):
    return policy.DocumentedRuleDefault(
        name=name, check_str=check_str, description=description,
        operations=[{'method': method, 'path': path}])


_RULES = [
    _rule(CREATE_FORCED_HOST, ADMIN,
          'Create a server on a named host (without one, the scheduler '
          'chooses).',
          'POST', '/servers (with a host)'),
    _rule(DELETE, ADMIN_OR_OWNER,
          'Delete a server (a RESIZED one is confirmed first, which the '
          'confirm rule must allow too).',
          'DELETE', '/servers/{server_id}'),
    _rule(RESIZE, ADMIN_OR_OWNER, 'Resize a server to another flavor.',
          'POST', '/servers/{server_id}/action (resize)'),
    _rule(CONFIRM_RESIZE, ADMIN_OR_OWNER,
          'Confirm a finished resize or cold migration.',
          'POST', '/servers/{server_id}/action (confirmResize)'),
    _rule(REVERT_RESIZE, ADMIN_OR_OWNER,
          'Revert a finished resize or cold migration.',
          'POST', '/servers/{server_id}/action (revertResize)'),
    _rule(MIGRATE, ADMIN, 'Cold-migrate a server to a host the scheduler '
                          'chooses.',
          'POST', '/servers/{server_id}/action (migrate)'),
    _rule(MIGRATE_HOST, ADMIN, 'Cold-migrate a server to a named host '
                               '(checked besides the migrate rule).',
          'POST', '/servers/{server_id}/action (migrate with host)'),
    _rule(LOCK, ADMIN_OR_OWNER, 'Lock a server: only an admin may then act '
                                'on it.',
          'POST', '/servers/{server_id}/action (lock)'),
    _rule(UNLOCK, ADMIN_OR_OWNER, 'Unlock a server.',
          'POST', '/servers/{server_id}/action (unlock)'),
    _rule(UNLOCK_OVERRIDE, ADMIN,
          'Unlock a server that was locked by someone outside its project '
          '(an admin); checked besides the unlock rule.',
          'POST', '/servers/{server_id}/action (unlock)'),
    _rule(CONSOLE_OUTPUT, ADMIN_OR_OWNER,
          'Show the text of a server\'s serial console (console.log).',
          'POST', '/servers/{server_id}/action (os-getConsoleOutput)'),
    _rule(CONFIRM_EXPIRED, ADMIN,
          'Confirm every resize older than [compute]/resize_confirm_window '
          '(the periodic task; resize-flows confirm-expired).',
          'POST', '/os-resize-flows/confirm-expired'),
    _rule(MIGRATION_ABORT, ADMIN,
          'Abort a server\'s move in progress: its flow stops at its next '
          'safe point and is undone; the migration ends cancelled.',
          'DELETE', '/servers/{server_id}/migrations/{migration_id}'),
    _rule(FLOW_LIST, ADMIN, 'List the flows of every server.',
          'GET', '/os-resize-flows/flows'),
    _rule(FLOW_SHOW, ADMIN, 'Show a flow and its tasks.',
          'GET', '/os-resize-flows/flows/{flow_id}'),
    _rule(FLOW_RESUME, ADMIN, 'Resume an interrupted flow.',
          'POST', '/os-resize-flows/flows/{flow_id}/resume'),
    _rule(FLOW_ROLLBACK, ADMIN, 'Roll a flow back.',
          'POST', '/os-resize-flows/flows/{flow_id}/rollback'),
    _rule(FLOW_PURGE, ADMIN, 'Delete flows that ended before a date.',
          'DELETE', '/os-resize-flows/flows?before={date}'),
    _rule(FLOW_ABANDON, ADMIN,
          'Abandon a flow that neither resume nor rollback can finish: '
          'its server goes to error, its migration to error.',
          'POST', '/os-resize-flows/flows/{flow_id}/abandon'),
    _rule(AUDIT, ADMIN,
          'Compare the records with every host (or one) and list what '
          'does not match; with repair, fix the safe classes.',
          'POST', '/os-resize-flows/audit'),
    _rule(CONDUCTOR_LIST, ADMIN,
          'List the live conductors of the jobboard and the flows they run.',
          'GET', '/os-resize-flows/conductors'),
    _rule(JOB_LIST, ADMIN,
          'List the jobs on the jobboard: who holds which, since when.',
          'GET', '/os-resize-flows/jobs'),
    _rule(HOST_MANAGE, ADMIN, 'Register, remove, disable or enable '
                              'compute hosts.',
          'POST', '/os-resize-flows/hosts'),
    _rule(HOST_DRAIN, ADMIN,
          'Drain a host: disable it and cold-migrate every server off it '
          '(each move is checked against the migrate and confirm rules '
          'too).',
          'POST', '/os-resize-flows/hosts/{host}/drain'),
    _rule(FLAVOR_MANAGE, ADMIN, 'Create flavors.', 'POST', '/flavors'),
    _rule(IMAGE_CREATE, ADMIN,
          'Add an image to the image store (public, as Glance\'s public '
          'images).', 'POST', '/images'),
    _rule(IMAGE_DELETE, ADMIN,
          'Delete an image that no server uses.',
          'DELETE', '/images/{image_id}'),
    _rule(IMAGE_LIST, ANYONE, 'List images.', 'GET', '/images'),
    _rule(IMAGE_SHOW, ANYONE, 'Show an image.', 'GET', '/images/{image_id}'),
    _rule(IMAGE_CACHE_CLEAN, ADMIN,
          'Remove the cached bases that no instance directory uses from '
          'the image cache of every host or of one.',
          'POST', '/os-resize-flows/image-cache/clean'),
    _rule(VOLUME_CREATE, ADMIN_OR_OWNER,
          'Create a volume (a file in [volumes]/volume_dir) in one\'s '
          'project.', 'POST', '/volumes'),
    _rule(VOLUME_LIST, ADMIN_OR_OWNER,
          'List volumes (a non-admin sees its project\'s only).',
          'GET', '/volumes'),
    _rule(VOLUME_SHOW, ADMIN_OR_OWNER, 'Show a volume.',
          'GET', '/volumes/{volume_id}'),
    _rule(VOLUME_DELETE, ADMIN_OR_OWNER,
          'Delete a volume that is not attached, and its file.',
          'DELETE', '/volumes/{volume_id}'),
    _rule(VOLUME_ATTACH, ADMIN_OR_OWNER,
          'Attach a volume to a server (checked against the server).',
          'POST', '/servers/{server_id}/os-volume_attachments'),
    _rule(VOLUME_DETACH, ADMIN_OR_OWNER,
          'Detach a volume from a server (checked against the server).',
          'DELETE', '/servers/{server_id}/os-volume_attachments/'
                    '{volume_id}'),
    _rule(PORT_CREATE, ADMIN_OR_OWNER,
          'Create a port (the ports plugin) in the caller\'s project.',
          'POST', '/ports'),
    _rule(PORT_LIST, ADMIN_OR_OWNER,
          'List ports (a non-admin sees its project\'s only).',
          'GET', '/ports'),
    _rule(PORT_SHOW, ADMIN_OR_OWNER, 'Show a port.',
          'GET', '/ports/{port_id}'),
    _rule(PORT_DELETE, ADMIN_OR_OWNER, 'Delete a port that is not attached.',
          'DELETE', '/ports/{port_id}'),
    _rule(PORT_ATTACH, ADMIN_OR_OWNER,
          'Attach a port of the server\'s project to a server.',
          'POST', '/servers/{server_id}/os-interface'),
    _rule(PORT_DETACH, ADMIN_OR_OWNER, 'Detach a port from a server.',
          'DELETE', '/servers/{server_id}/os-interface/{port_id}'),
]


def list_rules():
    """Every default rule (the ``oslo.policy.policies`` entry point)."""
    return _BASE + _RULES


_LOCK = threading.Lock()
_ENFORCER = None
_GENERATION = 0


def generation():
    """A number that changes each time the enforcer is forgotten
    (:func:`reset`), for answers cached by a request context."""
    return _GENERATION


def get_enforcer():
    """The process's enforcer, its defaults registered, reading
    ``[oslo_policy]/policy_file`` (the ``oslo.policy.enforcer`` entry
    point, for oslopolicy-checker and friends, too)."""
    global _ENFORCER
    with _LOCK:
        if _ENFORCER is None:
            enforcer = policy.Enforcer(CONF)
            enforcer.register_defaults(list_rules())
            _ENFORCER = enforcer
        return _ENFORCER


def reset():
    """Forget the enforcer (tests; after the policy file option changed)."""
    global _ENFORCER, _GENERATION
    with _LOCK:
        if _ENFORCER is not None:
            _ENFORCER.clear()
        _ENFORCER = None
        _GENERATION += 1


def _who(ctx):
    return {'user_id': ctx.user_id, 'project_id': ctx.project_id,
            'roles': list(ctx.roles)}


def is_admin(ctx):
    """Whether ``ctx`` is a cloud administrator: the one answer, the rule
    ``context_is_admin`` (``role:admin`` by default, whose role names
    oslo.policy compares case-insensitively), used by the access rules and
    by every check of the API's own (who sees every project's servers,
    private flavors, who may act on a locked server), as Nova's
    ``check_is_admin``. A policy file that redefines the rule redefines
    both."""
    return get_enforcer().authorize('context_is_admin', {}, _who(ctx),
                                    do_raise=False)


def credentials(ctx):
    creds = _who(ctx)
    creds['is_admin'] = is_admin(ctx)
    return creds


def every_project():
    """The target of a rule over every project's servers or flows: a
    project that is nobody's, so that only a rule that does not ask for
    the caller's own project (an admin's) passes."""
    return {'project_id': '<every project %s>' % uuidlib.uuid4().hex,
            'user_id': None}


def authorize(ctx, rule, target=None):
    """Raise ``PolicyNotAuthorized`` (403) unless ``ctx`` passes ``rule``
    on ``target`` (a dict with the server's ``project_id`` and
    ``user_id``; by default the caller's own project)."""
    if target is None:
        target = {'project_id': ctx.project_id, 'user_id': ctx.user_id}
    try:
        return get_enforcer().authorize(rule, target, credentials(ctx),
                                        do_raise=True)
    except policy.PolicyNotAuthorized:
        raise exception.PolicyNotAuthorized(action=rule)


def check(ctx, rule, target=None):
    """Whether ``ctx`` passes ``rule`` (no exception)."""
    try:
        authorize(ctx, rule, target)
    except exception.PolicyNotAuthorized:
        return False
    return True
