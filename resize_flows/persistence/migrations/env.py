"""Alembic environment of resize-flows' own tables.

Run through ``resize_flows.persistence.migration`` (``resize-flows db sync``),
which passes the connection in. Our revisions are recorded in the table
``resize_flows_alembic_version``: TaskFlow's own chain, in the same
database, holds the default ``alembic_version`` and cannot be told otherwise.
"""
from alembic import context

from resize_flows.persistence import models
from resize_flows.persistence.migrations.env_settings import VERSION_TABLE


def run_migrations_online():
    connection = context.config.attributes['connection']
    context.configure(
        connection=connection,
        target_metadata=models.Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == 'sqlite',
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit('resize-flows migrations run online only')
run_migrations_online()
