"""An outside plugin installed at test time, as a real distribution.

:func:`install` writes tests/fixtures/outside_plugin/rf_tracer.py and a
``rf_tracer-1.0.dist-info`` (METADATA, and entry_points.txt registering
``tracer`` and ``badnic`` under ``resize_flows.plugins``) into a
directory and puts it at the front of ``sys.path``: importlib.metadata
then finds the distribution as it finds an installed one, and stevedore
loads its entry points. stevedore caches entry points twice: per
``sys.path`` (in memory, and in files under ~/.cache/python-entrypoints)
and per entry point group for the process's life
(``ExtensionManager.ENTRY_POINT_CACHE``, blind to ``sys.path``). The
test gets fresh ones of its own instead, so that the scan sees this
distribution (or, uninstalled, does not), no file outside the test's tmp
directory is written and no other test's scan is reused.
"""
import importlib
import pathlib
import shutil
import sys

from stevedore import _cache as stevedore_cache
from stevedore import extension as stevedore_extension

SOURCE = (pathlib.Path(__file__).parent / 'fixtures' / 'outside_plugin'
          / 'rf_tracer.py')
MODULE = 'rf_tracer'
DIST = 'rf-tracer'
ENTRY_POINTS = '''[resize_flows.plugins]
tracer = rf_tracer:Tracer
badnic = rf_tracer:BadDevice
'''
METADATA = '''Metadata-Version: 2.1
Name: rf-tracer
Version: 1.0
Summary: An outside plugin of resize-flows, made by a test
'''


class OutsidePlugin:
    """The distribution in ``site``; :meth:`uninstall` takes it off
    ``sys.path`` (as ``pip uninstall`` would take it off the machine),
    :meth:`reinstall` puts it back."""

    def __init__(self, site, cache_dir, monkeypatch):
        self.site = site
        self.cache_dir = cache_dir
        self._monkeypatch = monkeypatch

    @property
    def module(self):
        """The plugin's module (imported from ``site``)."""
        return importlib.import_module(MODULE)

    def uninstall(self):
        sys.path.remove(str(self.site))
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()
        _rescan()

    def reinstall(self):
        self._monkeypatch.syspath_prepend(str(self.site))
        _rescan()


def _rescan():
    """Make stevedore scan the entry points again (the test's own
    group cache, set by :func:`install`)."""
    stevedore_extension.ExtensionManager.ENTRY_POINT_CACHE.clear()


def install(tmp_path, monkeypatch):
    """Write the distribution under ``tmp_path/site``, put it on
    ``sys.path`` and give stevedore a fresh cache; undone by
    ``monkeypatch``; call :func:`forget` at the end of the test (another
    test imports its own copy)."""
    site = tmp_path / 'site'
    dist_info = site / 'rf_tracer-1.0.dist-info'
    dist_info.mkdir(parents=True)
    shutil.copyfile(SOURCE, site / (MODULE + '.py'))
    (dist_info / 'METADATA').write_text(METADATA)
    (dist_info / 'entry_points.txt').write_text(ENTRY_POINTS)
    cache_dir = tmp_path / 'entry-point-cache'
    monkeypatch.setattr(stevedore_cache, 'get_group_all',
                        stevedore_cache.Cache(str(cache_dir)).get_group_all)
    monkeypatch.setattr(stevedore_extension.ExtensionManager,
                        'ENTRY_POINT_CACHE', {})
    forget()
    monkeypatch.syspath_prepend(str(site))
    return OutsidePlugin(site, cache_dir, monkeypatch)


def forget():
    """Forget the module imported from a test's ``site``."""
    sys.modules.pop(MODULE, None)
