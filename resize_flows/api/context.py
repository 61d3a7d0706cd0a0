"""Who asks, and what they are told: the request context, and the filter
that shows a caller who is not an admin no infrastructure in an error.

Every public function of the API is defined ``@tenant_facing``: the
errors it raises pass through :func:`for_caller` on their way out.
"""
import dataclasses
import functools
import logging
import uuid as uuidlib

from resize_flows import exception
from resize_flows import policy

#: Where the details of an error that a caller who is not an admin sees
#: only in general go (see :func:`for_caller`). The name is the one the
#: API has always logged them under (the CLI keeps them off the console).
DETAILS_LOG = logging.getLogger('resize_flows.api.details')


@dataclasses.dataclass
class RequestContext:
    """Who asks: user, project, roles; one request id per request."""
    user_id: str = 'admin'
    project_id: str = 'admin'
    roles: tuple = ('admin',)
    request_id: str = dataclasses.field(
        default_factory=lambda: 'req-' + str(uuidlib.uuid4()))

    @property
    def is_admin(self):
        """A cloud administrator, by the access rule ``context_is_admin``
        (:func:`policy.is_admin`): the same answer as every rule that
        names it. Asked once per context (and again should its roles or
        the enforcer change), as Nova's context does."""
        key = (tuple(self.roles), self.project_id, self.user_id,
               policy.generation())
        cached = self.__dict__.get('_is_admin')
        if cached is None or cached[0] != key:
            cached = self.__dict__['_is_admin'] = (key, policy.is_admin(self))
        return cached[1]


def get_admin_context():
    return RequestContext()


def for_caller(ctx, error):
    """``error`` as ``ctx`` may see it. An admin sees every error as it
    is. Anyone else, as Nova's rule has it, sees no infrastructure: a
    NoValidHost (or a shortage on a host) becomes Nova's generic "No valid
    host was found."; an error of a hypervisor, a disk, the jobboard, or
    an unexpected one becomes :class:`~exception.ServiceError` with its
    status code and the request id. The details go to the log, under the
    request id. Errors about the caller's own request and servers (4xx:
    not found, not allowed, wrong state...) are shown as they are."""
    if ctx is None or not isinstance(error, Exception) or \
            getattr(error, 'for_tenants', False) or ctx.is_admin:
        return error
    if isinstance(error, (exception.NoValidHost,
                          exception.InsufficientResources)):
        DETAILS_LOG.info('request %s: %s', ctx.request_id, error)
        shown = exception.NoValidHost(exception.NoValidHost.GENERIC,
                                      reason='')
    elif (isinstance(error, exception.ResizeFlowsException)
          and 400 <= error.code < 500
          and not isinstance(error, exception.HypervisorError)):
        return error
    else:
        DETAILS_LOG.error(
            'request %s of %s (project %s) failed: %s: %s', ctx.request_id,
            ctx.user_id, ctx.project_id, type(error).__name__, error,
            exc_info=(type(error), error, error.__traceback__))
        code = (error.code if isinstance(
            error, exception.ResizeFlowsException) else 500)
        shown = exception.ServiceError(request_id=ctx.request_id, code=code)
    shown.for_tenants = True
    return shown


def shown_to(ctx):
    """The filter of one caller's errors: ``error -> for_caller(ctx,
    error)``, for an operation that raises them later (its ``wait()``)."""
    return functools.partial(for_caller, ctx)


def tenant_facing(func):
    """Raise what :func:`for_caller` lets the caller (the first argument)
    see."""
    @functools.wraps(func)
    def call(ctx, *args, **kwargs):
        try:
            return func(ctx, *args, **kwargs)
        except Exception as e:
            shown = for_caller(ctx, e)
            if shown is e:
                raise
            raise shown from None
    return call
