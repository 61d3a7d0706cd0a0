"""The flow log: TaskFlow's persistence, in the project's own database.

Every state change of every flow and task is written here by TaskFlow's
engine, which is what lets another process resume or roll back a flow.
For now this is TaskFlow's stock SQLAlchemy backend, bound to the process's
one engine (so one connection pool serves records and log alike).

A stored flow detail's ``meta`` carries, besides TaskFlow's ``factory``
entry, ``operation``, ``instance_uuid`` and ``migration_uuid``.
"""
import contextlib
import threading

from taskflow.persistence.backends import impl_sqlalchemy

from resize_flows.persistence import db

_LOCK = threading.Lock()
_BACKENDS = {}


def get_backend(url=None):
    """The process's flow log backend for ``url`` (default: configured)."""
    url = url or db.get_url()
    with _LOCK:
        backend = _BACKENDS.get(url)
        if backend is None:
            backend = impl_sqlalchemy.SQLAlchemyBackend(
                {'connection': url}, engine=db.get_engine(url))
            _BACKENDS[url] = backend
        return backend


def reset():
    with _LOCK:
        _BACKENDS.clear()


def upgrade(url=None):
    """Create or upgrade TaskFlow's tables (logbooks, flow/atom details)."""
    with contextlib.closing(get_backend(url).get_connection()) as conn:
        conn.upgrade()


def version(url=None):
    """TaskFlow's own alembic revision in this database, or None."""
    import sqlalchemy as sa
    engine = db.get_engine(url)
    if not sa.inspect(engine).has_table('alembic_version'):
        inspector = sa.inspect(engine)
        return 'create_all' if inspector.has_table('logbooks') else None
    with engine.connect() as conn:
        return conn.execute(
            sa.text('SELECT version_num FROM alembic_version')).scalar()
