"""Configuration: one module per option group, registered explicitly.

``register_opts(conf)`` registers every group on a ``ConfigOpts``; nothing is
registered as a side effect of an import. ``CONF`` is the process-wide
instance the CLI and the embedding API use.
"""
from oslo_config import cfg
from oslo_policy import opts as policy_opts

from resize_flows.conf import compute
from resize_flows.conf import database
from resize_flows.conf import default
from resize_flows.conf import flows
from resize_flows.conf import image_cache
from resize_flows.conf import jobboard
from resize_flows.conf import libvirt
from resize_flows.conf import notifications
from resize_flows.conf import remote
from resize_flows.conf import scheduler
from resize_flows.conf import testing
from resize_flows.conf import volumes

CONF = cfg.CONF

_MODULES = (default, database, compute, scheduler, flows, jobboard,
            notifications, libvirt, remote, image_cache, volumes,
            testing)

#: The policy file's default name, looked up in the config directories
#: (/etc/resize-flows/policy.yaml), as every OpenStack service does.
POLICY_FILE = 'policy.yaml'


def register_opts(conf):
    for module in _MODULES:
        module.register_opts(conf)
    # [oslo_policy]: policy_file and friends (in the sample through the
    # generator's oslo.policy namespace).
    policy_opts.set_defaults(conf, policy_file=POLICY_FILE)


def modules():
    return _MODULES


def validate(conf=CONF):
    """Read every option of resize-flows' groups once, so that a value
    that is not valid (``max_attempts = abc``) is refused before an
    operation starts rather than in the middle of a flow. Raises
    :class:`~resize_flows.exception.InvalidConfiguration` (one line: the
    option and oslo.config's reason)."""
    from resize_flows import exception
    for module in _MODULES:
        for group, opts in module.list_opts().items():
            name = getattr(group, 'name', group) or 'DEFAULT'
            section = (conf if name == 'DEFAULT'
                       else getattr(conf, name))
            for opt in opts:
                try:
                    getattr(section, opt.dest)
                except (cfg.Error, ValueError) as e:
                    raise exception.InvalidConfiguration(
                        reason='[%s]/%s: %s' % (name, opt.dest,
                                                _one_line(e)))


def _one_line(error):
    text = str(error)
    # oslo.config names where the value came from; keep the file and the
    # reason, on one line.
    return ' '.join(text.split())
