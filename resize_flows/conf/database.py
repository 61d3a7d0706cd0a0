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
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
