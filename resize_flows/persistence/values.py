"""The one rule for values stored in the flow log, on every database.

A stored value (a task's arguments and result, a flow's store, meta) is a
JSON document built from JSON's own types only: ``dict`` with ``str`` keys,
``list`` (a ``tuple`` is written as a list), ``str``, ``int``, finite
``float``, ``bool`` and ``None``. Anything else (a set, a datetime, a UUID,
bytes, an object, a non-string key, NaN) is refused with
:class:`ValueNotStorable`, naming where it was, before anything is written.

Why refuse rather than convert: SQLite's JSON quietly turns a set into a
list and a datetime into a string, PostgreSQL's refuses them, so the same
task behaved differently per database, and a value that comes back from
the log as another type makes a resumed task see something else than the
first run did. Values are stored as text written by this module, so every
database stores and returns exactly the same document.

A failure (an exception and its traceback) is the one exception to the
rule: its exception arguments are for people to read, so an argument that
is not JSON is stored as its ``repr``.
"""
import json
import math

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False,
                            separators=(',', ':'))
_SCALARS = (str, int, float, bool, type(None))


class ValueNotStorable(TypeError):
    """A value the flow log does not store (see the module's rule)."""


def check(value, where='value'):
    """Raise :class:`ValueNotStorable` unless ``value`` obeys the rule."""
    _check(value, where)


def _check(value, where):
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueNotStorable('%s is %r: the flow log stores finite '
                                   'numbers only' % (where, value))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueNotStorable(
                    '%s has the key %r (%s): the flow log stores JSON, '
                    'whose keys are strings' % (
                        where, key, type(key).__name__))
            _check(item, '%s[%r]' % (where, key))
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, '%s[%d]' % (where, index))
        return
    raise ValueNotStorable(
        '%s is a %s (%r): the flow log stores JSON values only (dict, '
        'list, str, int, float, bool, None) on every database' % (
            where, type(value).__name__, _short(value)))


def _short(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def dumps(value, where='value'):
    """The stored text of ``value`` (None stays None: SQL NULL)."""
    if value is None:
        return None
    _check(value, where)
    return _ENCODER.encode(value)


def loads(text):
    return None if text is None else json.loads(text)


def _readable_args(args):
    out = []
    for arg in args or ():
        try:
            _check(arg, 'arg')
        except ValueNotStorable:
            arg = repr(arg)
        out.append(arg)
    return out


def failure_dict(data):
    """A Failure's ``to_dict()`` made storable: arguments that are not
    JSON become their ``repr``; so do those of its causes."""
    if data is None:
        return None
    data = dict(data)
    if 'exc_args' in data:
        data['exc_args'] = _readable_args(data['exc_args'])
    if data.get('causes'):
        data['causes'] = [failure_dict(cause) for cause in data['causes']]
    return data


def retry_results(results):
    """A retry's history, ``[(data, {atom: failure dict})]``, storable."""
    if not results:
        return results
    return [[data, {name: failure_dict(fail)
                    for name, fail in (failures or {}).items()}]
            for data, failures in results]
