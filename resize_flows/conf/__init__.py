"""Configuration: one module per option group, registered explicitly.

``register_opts(conf)`` registers every group on a ``ConfigOpts``; nothing is
registered as a side effect of an import. ``CONF`` is the process-wide
instance the CLI and the embedding API use.
"""
from oslo_config import cfg

from resize_flows.conf import compute
from resize_flows.conf import database
from resize_flows.conf import default
from resize_flows.conf import flows
from resize_flows.conf import libvirt
from resize_flows.conf import testing

CONF = cfg.CONF

_MODULES = (default, database, compute, flows, libvirt, testing)


def register_opts(conf):
    for module in _MODULES:
        module.register_opts(conf)


def modules():
    return _MODULES
