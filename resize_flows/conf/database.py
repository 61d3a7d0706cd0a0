"""[database] options: the one database that holds records and flow log."""
from oslo_config import cfg

group = cfg.OptGroup('database', title='Database options')

opts = [
    cfg.StrOpt(
        'connection',
        secret=True,
        help='SQLAlchemy URL of the database holding the records and the '
             'flow log, e.g. postgresql+psycopg2://user@127.0.0.1/resize '
             'or mysql+pymysql://root@127.0.0.1/resize. Unset: SQLite at '
             '$state_dir/resize-flows.sqlite.'),
    cfg.BoolOpt(
        'connection_debug',
        default=False,
        help='Log every SQL statement.'),
    cfg.FloatOpt(
        'sqlite_busy_timeout',
        default=30.0,
        min=0.0,
        help='SQLite only: how many seconds a write waits for the '
             'database\'s write lock while another process holds it, '
             'before it fails with "database is locked". Reads never '
             'wait (WAL mode).'),
    cfg.IntOpt(
        'max_retries',
        default=10,
        min=0,
        help='PostgreSQL and MariaDB: how many times a lost or refused '
             'connection to the database server (a restart, a fail-over) '
             'is tried again, [database]/retry_interval seconds apart, '
             'before the error is raised. What is tried again is only '
             'what is safely repeatable: taking a connection before a '
             'transaction starts, a read, a flow log write (each one '
             'statement or one idempotent transaction), a lease\'s; a '
             'transaction of the records cut in its middle is rolled back '
             'by the server and its error raised, never half-written. 0: '
             'never try again.'),
    cfg.FloatOpt(
        'retry_interval',
        default=1.0,
        min=0.0,
        help='Seconds between two tries of a lost database connection '
             '(see [database]/max_retries).'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
