"""Fault injection into named tasks, the one mechanism for every test.

A fault is ``(task, point, action)``: when the task named ``task`` reaches
``point`` the action runs. Points:

- ``before-execute``: before execute() does anything;
- ``after-execute``: after execute()'s side effects, before its result is
  returned (so before the flow log records success);
- ``before-revert`` / ``after-revert``: the same around revert().

Outside the tasks, the API and the engine have named *windows* between two
writes that a crash must not strand (:data:`WINDOWS`); a fault
``(window, 'window', action)`` fires there, e.g.
``flow-stored:window:crash``.

Actions: ``raise`` (an exception of a given class, by default
:class:`InjectedFault`), ``crash`` (the process dies at once through
``os._exit``: no cleanup, no ``finally`` blocks, no flow log update) or
``stop`` (the process stops itself with SIGSTOP, alive and holding what
it holds, as a hung process would, until a SIGCONT).

Every task of :mod:`resize_flows.tasks` consults this registry; an empty
registry costs one dict lookup per call.

Fault injection is off unless a test switches it on: the pytest plugin
(:mod:`resize_flows.testing.pytest_plugin`) does in the test process, and
a ``resize-flows`` process started by a test gets the environment
variable :data:`SWITCH` ``=1`` (``rf_faults.env()`` sets it). Without it
:func:`inject` refuses and :func:`configure` ignores ``[testing]/faults``
(OS_TESTING__FAULTS) with a warning, so a production process (the CLI, a
conductor) never arms a fault whatever its configuration says.
"""
import importlib
import logging
import os
import signal
import threading

BEFORE_EXECUTE = 'before-execute'
AFTER_EXECUTE = 'after-execute'
BEFORE_REVERT = 'before-revert'
AFTER_REVERT = 'after-revert'
POINTS = (BEFORE_EXECUTE, AFTER_EXECUTE, BEFORE_REVERT, AFTER_REVERT)

#: The point of a named window (not a task's: see :data:`WINDOWS`).
WINDOW = 'window'
#: The named windows, where :func:`window` is called.
WINDOWS = {
    'flow-logged': 'a new flow is in the flow log, its store not yet',
    'flow-stored': 'a new flow and its store are in the flow log, its '
                   'operation not yet started in the records',
    'rollback-recorded': 'flow rollback of a finished move is between its '
                         'two writes: recording its undo in the flow log '
                         'and claiming the server in the records',
    'delete-claimed': 'server delete has set the task state deleting, '
                      'nothing deleted yet',
    'delete-destroyed': 'server delete has destroyed the guest and its '
                        'disk, the records not yet deleted',
    'device-held': 'an attach or detach of a port or volume holds the '
                   'server by its task state, nothing else changed yet',
    'fetch-locked': 'a fetch of an image base holds the lock of that base '
                    'on its host, nothing copied yet',
}

RAISE = 'raise'
CRASH = 'crash'
STOP = 'stop'
ACTIONS = (RAISE, CRASH, STOP)

CRASH_EXIT_CODE = 137

#: The environment variable that switches fault injection on in a process
#: (value ``1``): for test suites only.
SWITCH = 'RESIZE_FLOWS_FAULT_INJECTION'

LOG = logging.getLogger(__name__)

_LOCK = threading.Lock()
_FAULTS = {}
_ENABLED = False


def enable():
    """Switch fault injection on in this process (the pytest plugin does,
    at start-up)."""
    global _ENABLED
    _ENABLED = True


def enabled():
    """Whether fault injection is on: :func:`enable` was called, or the
    environment has :data:`SWITCH` ``=1``."""
    return _ENABLED or os.environ.get(SWITCH) == '1'


class InjectedFault(Exception):
    """Raised by a ``raise`` fault that names no other exception class."""


class SimulatedCrash(BaseException):
    """For tests that stay in one process: raised as a ``raise`` fault's
    class, it is no ``Exception``, so TaskFlow records nothing more and no
    undo step runs, as in a crash; only ``finally`` blocks still run (a
    real ``crash`` fault runs none)."""


def inject(task, point=BEFORE_EXECUTE, action=RAISE, exc_class=None,
           times=1):
    """Arm a fault. ``times`` is how many hits fire it (None: every hit).
    Refused unless fault injection is on (:func:`enabled`). ``exc_class``
    is an exception class or, from a test's own code, a callable that
    makes the exception from the message; from outside a process
    (:func:`parse`) only an exception class is taken."""
    if not enabled():
        raise RuntimeError(
            'fault injection is off: it is for test suites only (the '
            'resize-flows pytest plugin, or %s=1 in the environment)'
            % SWITCH)
    _check_point(task, point)
    if action not in ACTIONS:
        raise ValueError('unknown fault action %r (one of %s)' % (
            action, ', '.join(ACTIONS)))
    with _LOCK:
        _FAULTS[(task, point)] = {
            'action': action, 'exc_class': exc_class or InjectedFault,
            'remaining': times, 'hits': 0}


def _check_point(task, point):
    if point == WINDOW:
        if task not in WINDOWS:
            raise ValueError('unknown window %r (one of %s)' % (
                task, ', '.join(sorted(WINDOWS))))
    elif point not in POINTS:
        raise ValueError('unknown fault point %r (one of %s, or %s for a '
                         'window)' % (point, ', '.join(POINTS), WINDOW))


def parse(spec):
    """``TASK:POINT:ACTION[:EXCEPTION]`` -> inject() keyword arguments."""
    parts = spec.strip().split(':')
    if len(parts) not in (3, 4) or not all(parts):
        raise ValueError('fault %r is not TASK:POINT:ACTION[:EXCEPTION]'
                         % spec)
    task, point, action = parts[:3]
    if (point not in POINTS + (WINDOW,) or action not in ACTIONS or
            (point == WINDOW and task not in WINDOWS)):
        raise ValueError('fault %r: point is one of %s (or %s after one of '
                         'the windows %s); action one of %s'
                         % (spec, ', '.join(POINTS), WINDOW,
                            ', '.join(sorted(WINDOWS)), ', '.join(ACTIONS)))
    exc_class = None
    if len(parts) == 4:
        exc_class = _exception_class(spec, parts[3])
    return {'task': task, 'point': point, 'action': action,
            'exc_class': exc_class}


def _exception_class(spec, path):
    """The exception class at dotted ``path``; ValueError for anything
    else (a function, say ``os.system``, is never called)."""
    module_name, _dot, name = path.rpartition('.')
    if not module_name or not name.isidentifier():
        raise ValueError('fault %r: %r is not a dotted class path'
                         % (spec, path))
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise ValueError('fault %r: no exception class %s (%s)'
                         % (spec, path, e))
    if not (isinstance(found, type) and issubclass(found, BaseException)):
        raise ValueError('fault %r: %s is not an exception class'
                         % (spec, path))
    return found


def configure(conf):
    """Arm the faults of ``[testing]/faults`` (or OS_TESTING__FAULTS) when
    fault injection is on; otherwise ignore them with a warning. A
    malformed fault is logged and skipped, so it breaks no command.
    Returns the specs armed."""
    specs = list(conf.testing.faults or ())
    if not specs:
        return []
    if not enabled():
        LOG.warning('[testing]/faults is set but ignored: fault injection '
                    'is for test suites only (%s=1)', SWITCH)
        return []
    armed = []
    for spec in specs:
        try:
            inject(**parse(spec))
        except ValueError as e:
            LOG.error('fault not armed: %s', e)
            continue
        armed.append(spec)
    return armed


def clear():
    with _LOCK:
        _FAULTS.clear()


def hits(task, point=BEFORE_EXECUTE):
    """How many times an armed fault has fired."""
    with _LOCK:
        fault = _FAULTS.get((task, point))
        return fault['hits'] if fault else 0


def window(name):
    """Called at the named window ``name`` (one of :data:`WINDOWS`)."""
    hit(name, WINDOW)


def hit(task, point):
    """Called by tasks at each point: fire the fault armed there, if any."""
    if not _FAULTS:
        return
    with _LOCK:
        fault = _FAULTS.get((task, point))
        if fault is None or fault['remaining'] == 0:
            return
        if fault['remaining'] is not None:
            fault['remaining'] -= 1
        fault['hits'] += 1
        action, exc_class = fault['action'], fault['exc_class']
    if action == CRASH:
        os._exit(CRASH_EXIT_CODE)
    if action == STOP:
        LOG.warning('fault injected into %s at %s: this process stops '
                    '(SIGSTOP)', task, point)
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    raise exc_class('fault injected into %s at %s' % (task, point))
