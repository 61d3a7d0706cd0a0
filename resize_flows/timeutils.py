"""Times as resize-flows shows and stores them: ISO 8601, UTC, seconds."""
import time


def iso(value):
    """``value`` as ``YYYY-MM-DDTHH:MM:SS`` (None stays None): a naive UTC
    datetime, or seconds since the epoch (``time.time()``)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(value))
    return value.isoformat(timespec='seconds')
