"""Entry point of oslo-config-generator: every option of resize-flows."""
from resize_flows import conf as rf_conf


def list_opts():
    """Return [(group, [opts])], one pair per group, for the generator."""
    pairs = []
    for module in rf_conf.modules():
        pairs.extend(module.list_opts().items())
    return pairs
