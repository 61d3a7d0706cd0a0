"""Schema upgrades: ``resize-flows db sync`` and ``db version``.

One alembic chain, recorded in ``resize_flows_alembic_version``, creates
every table, the flow log's included (revision 0003 copies a flow log kept
in TaskFlow's stock tables by older versions, then drops those).
"""
import os

from alembic import command
from alembic import config as alembic_config
from alembic import migration as alembic_migration
from alembic import script as alembic_script

from resize_flows.persistence import db
from resize_flows.persistence.migrations import env_settings

MIGRATIONS_DIR = os.path.join(os.path.dirname(__file__), 'migrations')


def _config(connection=None):
    cfg = alembic_config.Config()
    cfg.set_main_option('script_location', MIGRATIONS_DIR)
    cfg.attributes['connection'] = connection
    return cfg


def head():
    """The newest revision this code knows."""
    return alembic_script.ScriptDirectory.from_config(_config()).get_current_head()


def current(url=None):
    """The revision the database is at, or None before the first sync."""
    with db.get_reader(url).connect() as conn:
        ctx = alembic_migration.MigrationContext.configure(
            conn, opts={'version_table': env_settings.VERSION_TABLE})
        return ctx.get_current_revision()


def db_sync(url=None, revision='head'):
    """Upgrade the database to ``revision``; returns the revision reached."""
    with db.get_engine(url).begin() as conn:
        command.upgrade(_config(conn), revision)
    return current(url)


def db_version(url=None):
    """{'resize_flows': revision, 'head': newest}."""
    return {
        'resize_flows': current(url),
        'head': head(),
    }
