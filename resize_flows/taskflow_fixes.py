"""A fix for TaskFlow 6.5's flow log, applied when the engine is imported.

``RetryDetail.from_dict`` decodes a retry's history with the loop variable
``data`` reused for the failures, so every entry with a failure comes back
from the flow log with that failure's dict in place of the value the retry
had provided: after a reschedule, a flow loaded from the log (resumed,
rolled back, shown) would believe it had tried a dict, not a host. The
stored data is right (``to_dict`` is correct); only the decoding is wrong,
so decoding it again correctly is the whole fix. :func:`apply` is
idempotent.
"""
from taskflow.persistence import models
from taskflow.types import failure as tf_failure

_APPLIED = False


def _decode_results(results):
    decoded = []
    for provided, failures in results or []:
        decoded.append((provided, {
            name: (f if isinstance(f, tf_failure.Failure)
                   else tf_failure.Failure.from_dict(f))
            for name, f in failures.items()}))
    return decoded


def _retry_detail_from_dict(cls, data):
    obj = models.AtomDetail.from_dict.__func__(cls, data)
    obj.results = _decode_results(obj.results)
    return obj


def apply():
    global _APPLIED
    if _APPLIED:
        return
    models.RetryDetail.from_dict = classmethod(_retry_detail_from_dict)
    _APPLIED = True
