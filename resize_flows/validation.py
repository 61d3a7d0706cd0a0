"""Checks of what callers give: names and whole numbers, each in one place.

A refused value raises :class:`~resize_flows.exception.InvalidInput` (400)
with one line that shows it escaped (``repr``), before anything changes.
"""
import re
import unicodedata

from resize_flows import exception

#: Nova's limit for server, flavor and host names.
MAX_NAME_LENGTH = 255
#: The largest whole number the databases store (a signed 64-bit BIGINT).
MAX_INT = 2 ** 63 - 1

#: A host name: what a host's directory may be called (local hosts live
#: in $state_dir/hosts/NAME), for every host, whether local or by URI, so
#: that a host that could be created can be deleted.
_HOST_NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9._-]*\Z')


def _shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def check_name(kind, name):
    """A name of a server, flavor or host: a non-empty string of at most
    255 characters with no control characters (NUL, newline, ESC...)."""
    if not isinstance(name, str) or not name.strip():
        raise exception.InvalidInput(
            reason='a %s name must be a non-empty string, not %s'
                   % (kind, _shown(name)))
    if len(name) > MAX_NAME_LENGTH:
        raise exception.InvalidInput(
            reason='a %s name may be at most %d characters long, not %d'
                   % (kind, MAX_NAME_LENGTH, len(name)))
    bad = [c for c in name if unicodedata.category(c) in ('Cc', 'Cs', 'Zl',
                                                          'Zp')]
    if bad:
        raise exception.InvalidInput(
            reason='%s name %s has a control character (%s)'
                   % (kind, _shown(name), _shown(bad[0])))
    return name


def check_host_name(name):
    """A host name: letters, digits, ".", "_" and "-", starting with a
    letter or a digit, at most 255 characters."""
    check_name('host', name)
    if not _HOST_NAME_RE.match(name):
        raise exception.InvalidInput(
            reason='host name %s: use letters, digits, ".", "_" and "-", '
                   'starting with a letter or a digit' % _shown(name))
    return name


def check_whole(name, value, minimum=0, maximum=MAX_INT):
    """A whole number (an int, not a bool) between minimum and maximum."""
    if isinstance(value, bool) or not isinstance(value, int) \
            or value < minimum:
        raise exception.InvalidInput(
            reason='%s must be a whole number >= %d, not %s'
                   % (name, minimum, _shown(value)))
    if value > maximum:
        raise exception.InvalidInput(
            reason='%s must be at most %d, not %s'
                   % (name, maximum, _shown(value)))
    return value


def check_seconds(name, value, maximum):
    """A number of seconds (int or float, not a bool, not NaN) between 0
    and maximum."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0 <= value <= maximum:
        raise exception.InvalidInput(
            reason='%s must be a number of seconds from 0 to %d, not %s'
                   % (name, maximum, _shown(value)))
    return value
