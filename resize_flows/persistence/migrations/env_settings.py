"""Settings shared by the alembic environment and the code that runs it."""

# Our revisions' table: TaskFlow's chain holds the default 'alembic_version'.
VERSION_TABLE = 'resize_flows_alembic_version'
