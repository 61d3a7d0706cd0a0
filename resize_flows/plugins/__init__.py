"""The embedder's own steps inside every flow: plugins.

A plugin is a set of tasks written like ours (:class:`.tasks.base.
ResizeFlowsTask`: JSON arguments and results, an idempotent execute, its
revert beside it, a "Reversion strategy:" paragraph in its docstring),
registered under the stevedore entry point group :data:`NAMESPACE` and
enabled, in order, by ``[DEFAULT]/plugins``. Its tasks are atoms of the
flow like any other: stored in the flow log, resumed and rolled back with
the rest, listed by ``flow show``, fault-injectable by their atom name.

Where its tasks run, per operation (:data:`POINTS`):

- ``resize`` and ``migrate``: :data:`BEFORE_SOURCE_POWER_OFF` (the
  destination is claimed and prepared, the source guest still runs),
  :data:`BEFORE_DEST_DEFINE` (the disks are copied, the source is off and
  stashed as ``<uuid>_resize``; the destination's domain is not defined
  yet), :data:`AFTER_DEST_RUNS` (the destination's domain is defined and
  running if the instance was ACTIVE; the migration is not ``finished``
  yet);
- ``confirm_resize``: :data:`CONFIRM_SOURCE_CLEANUP` (the records say
  confirmed; the source's ``<uuid>_resize`` and domain are still there:
  CleanupSource, the point of no return, comes after);
- ``revert_resize``: :data:`BEFORE_SOURCE_RESTORE` (the destination's
  guest is off and undefined, its directory set aside; the source is
  still ``<uuid>_resize``), :data:`AFTER_SOURCE_RUNS` (the source's
  domain is defined again and running if it was ACTIVE; the records do
  not say reverted yet).

A flow records, in its factory's arguments in the flow log, which plugins
built it (``plugins``: their names, in order); resuming or rolling back a
flow rebuilds it with the same ones, and a flow whose plugin is no longer
installed is refused (:class:`~resize_flows.exception.PluginNotInstalled`)
before anything is touched.

A plugin may also put devices into the guest's domain on a host
(:meth:`Plugin.domain_devices`): the driver asks for them whenever it
writes a domain anew (server create, the destination of a move) and a
plugin task changes them with :meth:`.virt.driver.ComputeDriver.
update_devices`. A device is a plain dict (:data:`DEVICE_TYPES`):

- ``{'type': 'interface', 'id': ID, 'mac': 'fa:16:3e:..'}``: a virtio NIC
  (user-mode networking on local hosts);
- ``{'type': 'disk', 'id': ID, 'path': '/abs/file', 'format': 'qcow2'
  or 'raw', 'serial': TEXT}``: a virtio disk after the instance's own
  (vdd, vde, ...), its serial visible to the guest.

``id`` is the plugin's name for the device (a port or volume id): the
domain tags it with the alias ``ua-<plugin>-<id>``, so that each plugin
changes its own devices only.
"""
import re

from resize_flows.conf import CONF
from resize_flows import exception

#: The stevedore entry point group of plugins.
NAMESPACE = 'resize_flows.plugins'

BEFORE_SOURCE_POWER_OFF = 'before_source_power_off'
BEFORE_DEST_DEFINE = 'before_dest_define'
AFTER_DEST_RUNS = 'after_dest_runs'
CONFIRM_SOURCE_CLEANUP = 'confirm_source_cleanup'
BEFORE_SOURCE_RESTORE = 'before_source_restore'
AFTER_SOURCE_RUNS = 'after_source_runs'

_MOVE_POINTS = (BEFORE_SOURCE_POWER_OFF, BEFORE_DEST_DEFINE,
                AFTER_DEST_RUNS)
#: operation -> the points of its flow, in the order they run.
POINTS = {
    'resize': _MOVE_POINTS,
    'migrate': _MOVE_POINTS,
    'confirm_resize': (CONFIRM_SOURCE_CLEANUP,),
    'revert_resize': (BEFORE_SOURCE_RESTORE, AFTER_SOURCE_RUNS),
}

DEVICE_TYPES = ('interface', 'disk')
_NAME = re.compile(r'^[a-z][a-z0-9_]{0,31}$')
_DEVICE_ID = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$')


class Plugin:
    """What a plugin gives resize-flows; subclass it and override what
    the plugin needs. The class is registered under :data:`NAMESPACE`;
    it is instantiated with no arguments, and :attr:`name` is then its
    entry point's name."""

    #: The entry point's name (set when loaded).
    name = None

    def tasks(self, operation, point):
        """The tasks (new instances) to run at ``point`` of
        ``operation``'s flow, in order; none by default. Each atom name
        must be unique in the flow: name them after the plugin
        (``<plugin>.<TaskClass>``), as :func:`atom_name` does."""
        return []

    def domain_devices(self, instance_uuid, host):
        """The devices (dicts, see the module) the domain of
        ``instance_uuid`` on ``host`` has from this plugin; none by
        default."""
        return []

    def state(self):
        """The plugin's records as plain, comparable data (no ids that
        change, no timestamps), for ``testing.state.capture()``: a failed
        operation must leave them equal. Empty by default."""
        return {}

    def audit(self):
        """What is wrong in the plugin's records against the instances'
        records and the hypervisors, as one line per finding (a port bound
        ACTIVE on a host that is not its instance's, a volume connected to
        two guests...); none when all is well. ``testing.state.leaks()``
        and the crash tests report these with the rest."""
        return []

    def instance_deleted(self, instance_uuid, host):
        """The guest of ``instance_uuid`` on ``host`` is gone for good
        (server delete), its records not yet: release what the plugin
        holds for it. Idempotent (a delete killed midway runs again)."""


def atom_name(plugin, task_class):
    """``<plugin>.<TaskClass>``: the atom name of a plugin's task."""
    return '%s.%s' % (plugin, task_class.__name__)


def enabled():
    """The names of the plugins ``[DEFAULT]/plugins`` enables, in order."""
    return list(CONF.plugins)


def _manager(names):
    from stevedore import named
    # A missing name is load()'s one-line error: no warning of stevedore's
    # besides (the command line would print two lines).
    return named.NamedExtensionManager(
        NAMESPACE, names=list(names), invoke_on_load=True,
        name_order=True, on_load_failure_callback=_load_failed,
        on_missing_entrypoints_callback=None)


def _load_failed(_manager, entry_point, error):
    raise exception.PluginNotInstalled(
        name=entry_point.name, reason='it does not load: %s' % error)


def check_names(names):
    """Raise :class:`~resize_flows.exception.InvalidInput` unless
    ``names`` is a list of plugin names, each once."""
    if not isinstance(names, (list, tuple)):
        raise exception.InvalidInput(reason='plugins is a list of names, '
                                     'not %r' % (names,))
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise exception.InvalidInput(
                reason='%r is not a plugin name (lower case letters, '
                       'digits and "_", a letter first)' % (name,))
    if len(set(names)) != len(names):
        raise exception.InvalidInput(reason='a plugin is named twice in '
                                     '%s' % ', '.join(names))


def load(names):
    """The plugins called ``names``, loaded, in that order;
    :class:`~resize_flows.exception.PluginNotInstalled` (naming the
    first) when one is not installed or does not load."""
    check_names(names)
    if not names:
        return []
    mgr = _manager(names)
    found = {ext.name: ext.obj for ext in mgr.extensions}
    for name in names:
        if name not in found:
            raise exception.PluginNotInstalled(
                name=name, reason='no entry point of that name in %s'
                % NAMESPACE)
    plugins = []
    for name in names:
        obj = found[name]
        if not isinstance(obj, Plugin):
            raise exception.PluginNotInstalled(
                name=name, reason='%r is not a resize_flows.plugins.Plugin'
                % (obj,))
        obj.name = name
        plugins.append(obj)
    return plugins


def tasks_at(plugins, operation, point):
    """Every task ``plugins`` (loaded, in order) run at ``point`` of
    ``operation``."""
    if point not in POINTS[operation]:
        raise ValueError('%s has no plugin point %s' % (operation, point))
    found = []
    for plugin in plugins:
        found.extend(plugin.tasks(operation, point))
    return found


def check_device(plugin, device):
    """Raise InvalidInput unless ``device`` is a device dict (see the
    module) that ``plugin`` may give."""
    kind = device.get('type') if isinstance(device, dict) else None
    if kind not in DEVICE_TYPES:
        raise exception.InvalidInput(
            reason='plugin %s: %r is not a device' % (plugin, device))
    if not _DEVICE_ID.match(str(device.get('id', ''))):
        raise exception.InvalidInput(
            reason='plugin %s: device id %r is not letters, digits, "_" '
                   'or "-"' % (plugin, device.get('id')))
    if kind == 'interface':
        if not re.match(r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$',
                        str(device.get('mac', ''))):
            raise exception.InvalidInput(
                reason='plugin %s: %r is not a MAC address'
                       % (plugin, device.get('mac')))
    else:
        if not str(device.get('path', '')).startswith('/'):
            raise exception.InvalidInput(
                reason='plugin %s: a disk needs an absolute path, not %r'
                       % (plugin, device.get('path')))
        if device.get('format') not in ('qcow2', 'raw'):
            raise exception.InvalidInput(
                reason='plugin %s: a disk is qcow2 or raw, not %r'
                       % (plugin, device.get('format')))


def devices(names, instance_uuid, host):
    """``{plugin name: [device, ...]}``: what each plugin of ``names``
    puts into the domain of ``instance_uuid`` on ``host``, checked."""
    found = {}
    for plugin in load(names):
        devs = list(plugin.domain_devices(instance_uuid, host))
        for dev in devs:
            check_device(plugin.name, dev)
        found[plugin.name] = devs
    return found


def names_of_flow(factory_kwargs):
    """The plugins a stored flow was built with (its factory's
    ``plugins`` argument; none for a flow stored before plugins)."""
    return list((factory_kwargs or {}).get('plugins') or [])
