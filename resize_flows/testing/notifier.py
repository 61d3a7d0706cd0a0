"""A notifier plugin for tests: keeps every notification in memory.

Registered as the ``capture`` entry point of ``resize_flows.notifiers``;
set ``[notifications]/drivers = capture`` (or ``log,capture``) and read
:data:`CAPTURED`. :func:`clear` empties it.
"""
import threading

_LOCK = threading.Lock()
CAPTURED = []


class CapturingNotifier:
    def notify(self, notification):
        with _LOCK:
            CAPTURED.append(notification)


def clear():
    with _LOCK:
        del CAPTURED[:]


def event_types(instance_uuid=None):
    """The captured event types, in order (of one instance)."""
    with _LOCK:
        return [n['event_type'] for n in CAPTURED
                if instance_uuid is None
                or n['payload'].get('instance_uuid') == instance_uuid]
