"""The base of every resize-flows task.

It puts the fault injection points of :mod:`resize_flows.testing.faults`
around each subclass's ``execute`` and ``revert`` (keeping their signatures,
which TaskFlow reads to wire arguments), checks that what ``execute``
returns is a value the flow log stores (``persistence/values.py``), and
gives tasks their hosts' drivers and records.
"""
import functools

from taskflow import task

from resize_flows.persistence import repository
from resize_flows.persistence import values
from resize_flows.testing import faults
from resize_flows import virt


def _with_points(method, before, after, check_result=False):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        faults.hit(self.name, before)
        result = method(self, *args, **kwargs)
        if check_result:
            # Here, a value the flow log refuses fails this task (and the
            # flow is undone); once handed to TaskFlow, it would abort the
            # engine with the task left RUNNING.
            values.check(result, 'the result of %s' % self.name)
        faults.hit(self.name, after)
        return result
    wrapper.fault_points = True
    return wrapper


class ResizeFlowsTask(task.Task):
    """A revertible step whose arguments and results are plain JSON.

    Its atom name is its class name: that name is the key of its record in
    the flow log, so renaming a task class breaks the resume of flows
    stored before the rename.
    """

    #: What the engine reads from a task (``recovery.py``): whether its
    #: execute deletes what an undo would need, so that once it ran the
    #: flow can only be finished forward.
    point_of_no_return = False

    #: Whether this task is its flow's lifecycle task: the one whose undo
    #: undoes what the API did before it stored the flow, cancelled in
    #: place of the whole flow when none of its tasks ran.
    lifecycle = False

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
        """Whether this point of no return, interrupted, can still be
        undone: it has not yet deleted what its undo needs (the default:
        it can)."""
        return True

    @staticmethod
    def driver(host_name):
        return virt.get_driver(repository.host_get(host_name))
