"""The base of every resize-flows task.

It puts the fault injection points of :mod:`resize_flows.testing.faults`
around each subclass's ``execute`` and ``revert`` (keeping their signatures,
which TaskFlow reads to wire arguments), checks that what ``execute``
returns is a value the flow log stores (``persistence/values.py``), and
gives tasks their hosts' drivers and records.
"""
import functools

from taskflow import task

from resize_flows import deadlines
from resize_flows import exception
from resize_flows import leases
from resize_flows.persistence import repository
from resize_flows.persistence import values
from resize_flows import states
from resize_flows.testing import faults
from resize_flows import virt


def _with_points(method, before, after, check_result=False):
    undo = not check_result

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        def body():
            if not undo:
                # A safe point: a flow fenced or aborted meanwhile stops
                # before this task does anything.
                leases.check('the start of %s' % self.name)
            faults.hit(self.name, before)
            result = method(self, *args, **kwargs)
            if check_result:
                # Here, a value the flow log refuses fails this task (and
                # the flow is undone); once handed to TaskFlow, it would
                # abort the engine with the task left RUNNING.
                values.check(result, 'the result of %s' % self.name)
            faults.hit(self.name, after)
            return result
        return deadlines.call(self.name, undo,
                              self.deadline_follows_progress, body)
    wrapper.fault_points = True
    return wrapper


class ResizeFlowsTask(task.Task):
    """A revertible step whose arguments and results are plain JSON.

    Its atom name is its class name: that name is the key of its record in
    the flow log, so renaming a task class breaks the resume of flows
    stored before the rename.

    What the engine reads from a task, besides TaskFlow's own interface
    (``execute``, ``revert``, ``provides``), is declared here with the
    value that fits most tasks; a task that differs says so:

    ``point_of_no_return``
        True on a task whose execute deletes what its revert would need
        (CleanupSource, DeleteDestinationFiles). The engine refuses to
        roll a flow back past such a task once it is done.
    ``undoable(migration_uuid)``
        Whether the revert of a point of no return can still restore what
        its execute changed: asked when the task was interrupted (running,
        failed or reverting), it is False once the task has deleted what
        its revert needs.
    ``lifecycle``
        True on the task that begins an operation in the records (the
        Begin* tasks of :mod:`resize_flows.tasks.lifecycle`), whose revert
        undoes what the API did before it stored the flow: the engine fails
        it with :class:`~resize_flows.exception.FlowCancelled` to cancel a
        flow that never ran.
    ``deadline_follows_progress``
        True on the disk copy: its deadline follows its progress
        (:mod:`resize_flows.deadlines`).

    Each execute and revert runs under the task's deadline
    (:mod:`resize_flows.deadlines`), and each execute starts with a safe
    point (``leases.check``: fenced, aborted).
    """

    #: True when execute deletes what revert would need (see the class).
    point_of_no_return = False

    #: True on the task that begins an operation in the records.
    lifecycle = False

    #: True on a task whose deadline is ``[flows]/copy_stall_timeout``
    #: from the last time its work moved (``deadlines.moved()``), instead
    #: of ``[flows]/task_timeout`` from its start.
    deadline_follows_progress = False

    def __init__(self, name=None, **kwargs):
        super().__init__(name=name or type(self).__name__, **kwargs)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, before, after in (
                ('execute', faults.BEFORE_EXECUTE, faults.AFTER_EXECUTE),
                ('revert', faults.BEFORE_REVERT, faults.AFTER_REVERT)):
            method = getattr(cls, name)
            if not getattr(method, 'fault_points', False):
                setattr(cls, name, _with_points(
                    method, before, after, check_result=name == 'execute'))

    def revert(self, *args, **kwargs):
        """Nothing to undo (the default)."""

    def undoable(self, migration_uuid):
        """Whether revert can still restore what execute changed (always,
        but for a point of no return that has deleted files)."""
        return True

    @staticmethod
    def driver(host_name):
        return virt.get_driver(repository.host_get(host_name))


def power_state(host_name, instance_uuid):
    """What the hypervisor says, or NOSTATE when it has no such guest."""
    try:
        return ResizeFlowsTask.driver(host_name).get_info(
            instance_uuid).power_state
    except exception.InstanceNotFoundOnHost:
        return states.NOSTATE
