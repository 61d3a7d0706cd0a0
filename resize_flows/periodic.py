"""Periodic work in a thread of a long-running process.

:class:`Periodic` calls :meth:`Periodic.run_once` every ``interval``
seconds from a daemon thread until :meth:`Periodic.stop`. The API's
``PeriodicConfirmer`` (:mod:`resize_flows.api.moves`) is one: it confirms
the moves that waited longer than ``[compute]/resize_confirm_window``,
and a conductor runs it beside its jobs. This module imports nothing of
the API, so the API can offer that confirmer and a conductor can use it
without an import running back up.
"""
import threading


class Periodic:
    """Runs :meth:`run_once` every ``interval`` seconds in a thread named
    :attr:`thread_name`. ``start()`` (returns itself), ``stop()``."""

    thread_name = 'periodic'

    def __init__(self, interval):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = None

    def run_once(self):
        """One round of the work; subclasses say what it is."""
        raise NotImplementedError

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.run_once()

    def start(self):
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=self.thread_name)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
