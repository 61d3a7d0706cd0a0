"""The ``db`` commands: create, upgrade and show the database schema
(ours and the flow log's) through :mod:`resize_flows.persistence.migration`.
"""
from cliff import show

from resize_flows.cmd import common
from resize_flows.persistence import migration as db_migration


class DbSync(show.ShowOne):
    """Create or upgrade the database schema (ours and the flow log's)."""

    def take_action(self, parsed):
        db_migration.db_sync()
        return common.as_columns(db_migration.db_version(),
                                 ['resize_flows', 'head'])


class DbVersion(show.ShowOne):
    """Show the schema revision of the database and of this code."""

    def take_action(self, parsed):
        return common.as_columns(db_migration.db_version(),
                                 ['resize_flows', 'head'])
