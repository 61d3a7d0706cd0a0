"""What a process that uses the API does at its start and its end."""
from resize_flows import operations
from resize_flows.testing import faults
from resize_flows import virt


def arm_configured_faults(conf):
    """Arm the faults that ``conf`` names (``[testing]/faults``) in this
    process, as a test suite's fault injection asks of a process it
    starts; ignored, with a warning, when injection is off. See
    :func:`resize_flows.testing.faults.configure`. No context, no rule:
    it is the process's own start-up."""
    return faults.configure(conf)


def shutdown():
    """Let every operation this process started end
    (:func:`~resize_flows.operations.wait_all`), then close every
    hypervisor connection."""
    operations.wait_all()
    virt.reset()
