"""Listeners that the engine puts on every run of a flow.

:class:`ActionEventListener` records an instance action event per task
transition, as Nova records one per compute step. (The notifications a
flow emits come from ``notifications.NotificationListener``, beside the
table of events it emits.)
"""
import logging

from taskflow.listeners import base as listener_base
from taskflow import states as tf_states
from taskflow.types import failure as tf_failure

from resize_flows.persistence import instance_actions
from resize_flows import states

LOG = logging.getLogger(__name__)


class ActionEventListener(listener_base.Listener):
    """Records an instance action event per task, as Nova records one per
    compute step: start and finish time, result, and the traceback of a
    failure. An undo step is recorded as ``revert <task>``."""

    def __init__(self, engine, meta):
        super().__init__(engine, task_listen_for=states.TASK_TRANSITIONS)
        self._instance = meta.get('instance_uuid')
        self._request = meta.get('request_id')

    def _task_receiver(self, state, details):
        if not self._request:
            return
        name = details['task_name']
        try:
            if state == tf_states.RUNNING:
                instance_actions.event_start(self._instance, self._request,
                                             name)
            elif state == tf_states.SUCCESS:
                instance_actions.event_finish(self._instance,
                                              self._request, name, 'Success')
            elif state == tf_states.FAILURE:
                instance_actions.event_finish(
                    self._instance, self._request, name, 'Error',
                    _traceback(details.get('result')))
            elif state == tf_states.REVERTING:
                instance_actions.event_start(self._instance, self._request,
                                             'revert ' + name)
            else:
                result = ('Success' if state == tf_states.REVERTED
                          else 'Error')
                instance_actions.event_finish(
                    self._instance, self._request, 'revert ' + name, result,
                    _traceback(details.get('result')))
        except Exception:
            # An event record must never break the flow it describes.
            LOG.exception('could not record event %s of %s', state, name)


def _traceback(result):
    if isinstance(result, tf_failure.Failure):
        return result.pformat(traceback=True)
    return None
