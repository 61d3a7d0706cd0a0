"""One error hierarchy for resize-flows.

Every error is a :class:`ResizeFlowsException`: a message template filled from
keyword arguments, which stay available as attributes, and the status a REST
front would answer with (``code``). libvirt's own errors are translated into
these inside ``resize_flows.virt.libvirt`` and never leak past it.
"""


class ResizeFlowsException(Exception):
    msg_fmt = "An unknown error occurred."
    code = 500

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        for key, value in kwargs.items():
            setattr(self, key, value)
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError, ValueError):
                message = self.msg_fmt
        self.message = str(message)
        super().__init__(self.message)


# 400 -----------------------------------------------------------------------

class Invalid(ResizeFlowsException):
    msg_fmt = "Invalid input: %(reason)s"
    code = 400


class InvalidInput(Invalid):
    msg_fmt = "Invalid input: %(reason)s"


class MarkerNotFound(Invalid):
    msg_fmt = "Marker %(marker)s could not be found."


class CannotResizeToSameFlavor(Invalid):
    msg_fmt = "When resizing, instances must change flavor."


class CannotResizeDisk(Invalid):
    msg_fmt = "Server disk was unable to be resized because: %(reason)s"


class FlavorDiskSmallerThanImage(Invalid):
    msg_fmt = ("Flavor %(flavor)s's disk is too small for image %(image)s: "
               "%(flavor_size)d bytes, the image needs %(image_size)d.")


class ConfigDriveUnavailable(Invalid):
    msg_fmt = ("A config drive needs %(tool)s, which is not installed on "
               "this machine.")


class NoValidHost(Invalid):
    msg_fmt = "No valid host was found. %(reason)s"

    #: What a caller who is not an admin is told (Nova's words): no host
    #: names, no capacities.
    GENERIC = "No valid host was found."


class FlowFactoryInvalid(Invalid):
    msg_fmt = "Flow %(flow_id)s cannot be rebuilt: %(reason)s"


class PluginNotInstalled(Invalid):
    msg_fmt = "Plugin %(name)s is not installed: %(reason)s"


# 403 -----------------------------------------------------------------------
# Only access rules answer 403 here: there are no quotas (Nova's other
# 403, "quota exceeded", has nothing to count against).

class Forbidden(ResizeFlowsException):
    msg_fmt = "Forbidden."
    code = 403


class PolicyNotAuthorized(Forbidden):
    msg_fmt = "Policy doesn't allow %(action)s to be performed."


# 404 -----------------------------------------------------------------------

class NotFound(ResizeFlowsException):
    msg_fmt = "Resource could not be found."
    code = 404


class InstanceNotFound(NotFound):
    msg_fmt = "Instance %(instance_id)s could not be found."


class FlavorNotFound(NotFound):
    msg_fmt = "Flavor %(flavor_id)s could not be found."


class HostNotFound(NotFound):
    msg_fmt = "Compute host %(host)s could not be found."


class ImageNotFound(NotFound):
    msg_fmt = "Image %(image_id)s could not be found."


class VolumeNotFound(NotFound):
    msg_fmt = "Volume %(volume_id)s could not be found."


class VolumeNotAttached(NotFound):
    msg_fmt = ("Volume %(volume_id)s is not attached to server "
               "%(instance_uuid)s.")


class MigrationNotFound(NotFound):
    msg_fmt = "Migration %(migration_id)s could not be found."


class MigrationNotFoundByStatus(MigrationNotFound):
    msg_fmt = ("Instance %(instance_id)s has no migration with status "
               "%(status)s.")


class FlowNotFound(NotFound):
    msg_fmt = "Flow %(flow_id)s could not be found."


class PortNotFound(NotFound):
    msg_fmt = "Port %(port_id)s could not be found."


# 409 -----------------------------------------------------------------------

class Conflict(ResizeFlowsException):
    msg_fmt = "Conflict: %(reason)s"
    code = 409


class InstanceInvalidState(Conflict):
    msg_fmt = ("Cannot '%(method)s' instance %(instance_uuid)s while it is "
               "in %(attr)s %(state)s.")


class InstanceIsLocked(Conflict):
    msg_fmt = "Instance %(instance_uuid)s is locked."


class UnexpectedTaskStateError(Conflict):
    msg_fmt = ("Instance %(instance_uuid)s: unexpected task state: expecting "
               "%(expected)s but the actual state is %(actual)s.")


class UnexpectedMigrationStatus(Conflict):
    msg_fmt = ("Migration %(migration_uuid)s: unexpected status: expecting "
               "%(expected)s but the actual status is %(actual)s.")


class FlowBusy(Conflict):
    msg_fmt = ("Flow %(flow_id)s is being run by %(owner)s (its lease runs "
               "until %(expires_at)s UTC).")


class FlowFenced(Conflict):
    """A flow-log write from a process that no longer holds the flow's
    lease (it expired and another process took the flow over). Not a
    TaskFlow StorageFailure on purpose: TaskFlow retries those, and the
    stale process must stop working on the flow at once."""
    msg_fmt = ("Flow %(flow_id)s is no longer held by %(owner)s (lease "
               "token %(token)s): its write of %(what)s was refused.")


class FlowStateConflict(Conflict):
    msg_fmt = "Cannot %(verb)s flow %(flow_id)s: %(reason)s"


class FlowCancelled(ResizeFlowsException):
    """Recorded as the failure of a flow's first task when a flow that
    never started is rolled back (cancelled)."""
    msg_fmt = ("Flow %(flow_id)s was cancelled by %(owner)s before any of "
               "its tasks ran.")


class InstanceHasQueuedFlow(Conflict):
    msg_fmt = ("Cannot '%(method)s' instance %(instance_uuid)s: it has an "
               "operation queued, its %(operation)s flow %(flow_id)s (job "
               "%(job_uuid)s), which a conductor will run; wait for it "
               "(resize-flows flow show %(flow_id)s).")


class InstanceHasUnfinishedFlow(Conflict):
    msg_fmt = ("Cannot '%(method)s' instance %(instance_uuid)s: its "
               "%(operation)s flow %(flow_id)s is unfinished (%(status)s); "
               "%(advice)s.")

    #: What to do about the flow, by its status.
    ADVICE = {
        'running': 'wait for it (resize-flows flow show %(flow_id)s)',
        'posted': 'a conductor resumes it once its claim on job '
                  '%(job_uuid)s expires, or roll it back (resize-flows '
                  'flow rollback %(flow_id)s)',
        None: 'resume it or roll it back first (resize-flows flow '
              'resume|rollback %(flow_id)s)',
    }

    def __init__(self, message=None, **kwargs):
        if message is None and 'advice' not in kwargs:
            key = kwargs.get('status')
            if key == 'interrupted' and kwargs.get('job_uuid'):
                key = 'posted'
            advice = self.ADVICE.get(key, self.ADVICE[None])
            kwargs['advice'] = advice % {
                'flow_id': kwargs.get('flow_id'),
                'job_uuid': kwargs.get('job_uuid')}
        super().__init__(message, **kwargs)


class ImageInUse(Conflict):
    msg_fmt = ("Image %(image_id)s is in use by servers %(servers)s and "
               "cannot be deleted.")


class VolumeInUse(Conflict):
    msg_fmt = "Volume %(volume_id)s is in use: %(reason)s."


class Duplicate(Conflict):
    msg_fmt = "%(kind)s %(name)s already exists."


class PortInUse(Conflict):
    msg_fmt = "Port %(port_id)s is attached to server %(instance_uuid)s."


class PortNotAttached(Conflict):
    msg_fmt = "Port %(port_id)s is not attached to server %(instance_uuid)s."


class MacAddressInUse(Conflict):
    msg_fmt = "MAC address %(mac)s is in use by another port."


# Capacity (raised by claims; the scheduler turns them into NoValidHost) -----

class InsufficientResources(Conflict):
    msg_fmt = ("Host %(host)s has not enough free %(resource)s: requested "
               "%(requested)s, free %(free)s.")


# Hypervisor and disks (500 unless said otherwise) --------------------------

class HypervisorError(ResizeFlowsException):
    msg_fmt = "Hypervisor error on host %(host)s: %(reason)s"


class HypervisorUnavailable(HypervisorError):
    msg_fmt = "Connection to the hypervisor of host %(host)s failed: %(reason)s"
    code = 503


class HypervisorConnectionLost(HypervisorUnavailable):
    """The connection to a host's libvirt broke or could not be opened
    (its daemon restarted, say): the driver reconnects and tries the call
    again, ``[libvirt]/reconnect_attempts`` times, before it gives up."""


class InstanceNotFoundOnHost(HypervisorError, NotFound):
    msg_fmt = "Instance %(instance_uuid)s has no domain on host %(host)s."
    code = 404


class InstanceExistsOnHost(HypervisorError, Conflict):
    msg_fmt = "Instance %(instance_uuid)s already exists on host %(host)s."
    code = 409


class InstancePowerOnFailure(HypervisorError):
    msg_fmt = "Failed to power on instance %(instance_uuid)s: %(reason)s"


class InstancePowerOffFailure(HypervisorError):
    msg_fmt = "Failed to power off instance %(instance_uuid)s: %(reason)s"


class DiskError(HypervisorError):
    msg_fmt = "Disk operation failed on host %(host)s: %(reason)s"


class ImageUnavailable(HypervisorError):
    msg_fmt = ("The image with sha256 %(sha256)s cannot be brought into "
               "the image cache of host %(host)s: %(reason)s")


class InstanceDirectoryConflict(HypervisorError, Conflict):
    msg_fmt = "Instance directory %(path)s on host %(host)s: %(reason)s"
    code = 409


class ServiceError(ResizeFlowsException):
    """What a caller who is not an admin is told of an error that would
    speak of the infrastructure (a hypervisor's, a disk's, the
    jobboard's, an unexpected one): its status code, no host, path or
    command line; the details are logged under the request id."""
    msg_fmt = ("The request could not be completed because of an internal "
               "error; an administrator can find the details under request "
               "%(request_id)s.")


class CannotUndo(ResizeFlowsException):
    msg_fmt = "Cannot undo %(step)s: %(reason)s"


# The jobboard (503 while it cannot be reached) ------------------------------

class JobboardUnavailable(ResizeFlowsException):
    msg_fmt = ("The jobboard at %(url)s cannot be reached: %(reason)s "
               "(nothing was changed).")
    code = 503


class OperationFailed(ResizeFlowsException):
    """A posted operation whose flow failed: a conductor ran it, so the
    task's own exception is known only from the flow log, as text."""
    msg_fmt = "%(operation)s failed (flow %(flow_id)s, %(state)s): %(reason)s"


class FlowNotStarted(Conflict):
    """A flow's first task found that the records never started its
    operation (its process died between storing the flow and the
    compare-and-swap start, and another operation may own the records
    since)."""
    msg_fmt = ("Flow %(flow_id)s never started its operation in the "
               "records: %(reason)s.")


class RefusedByRecords(Conflict):
    """A driver step that would destroy what the records call live."""
    msg_fmt = ("Refusing to %(action)s instance %(instance_uuid)s on host "
               "%(host)s: %(reason)s.")


class MigrationResolvedMeanwhile(Conflict):
    msg_fmt = ("Cannot '%(method)s' instance %(instance_uuid)s: another "
               "request got there first; its migration %(migration_uuid)s "
               "is %(status)s now.")


# Configuration and database (the service's own trouble) ---------------------

class InvalidConfiguration(ResizeFlowsException):
    msg_fmt = "Invalid configuration: %(reason)s"
    code = 500


class DatabaseError(ResizeFlowsException):
    """The database cannot be used: it is not there, not a database,
    corrupt or not writable (one line: which database, and why)."""
    msg_fmt = "Database %(database)s: %(reason)s"
    code = 503


class DatabaseLocked(DatabaseError):
    """SQLite: another process held the write lock longer than
    ``[database]/sqlite_busy_timeout``."""
    msg_fmt = ("Database %(database)s is locked: another process has held "
               "its write lock for more than %(seconds)s s (%(reason)s); "
               "try again")


# aborts and deadlines --------------------------------------------------------

class FlowAborted(ResizeFlowsException):
    """Raised at a safe point of a flow an operator asked to abort
    (``server migration abort``): the task fails, the flow is undone and
    its migration ends ``cancelled``."""
    msg_fmt = "Flow %(flow_id)s was aborted by %(requested_by)s."


class TaskTimeout(ResizeFlowsException):
    """A task (or its undo) ran past its deadline (``[flows]/task_timeout``,
    ``[flows]/task_timeouts``) or, for the disk copy, moved no byte for
    ``[flows]/copy_stall_timeout``."""
    msg_fmt = ("%(task)s did not finish within its deadline of "
               "%(seconds)s s%(detail)s.")

    def __init__(self, message=None, **kwargs):
        kwargs.setdefault('detail', '')
        super().__init__(message, **kwargs)


class CopyStalled(TaskTimeout):
    msg_fmt = ("%(task)s stalled: no byte of the disk copy moved for "
               "%(seconds)s s%(detail)s.")


class MigrationNotAbortable(Conflict):
    msg_fmt = ("Cannot abort the move of server %(instance_id)s: "
               "%(reason)s")
