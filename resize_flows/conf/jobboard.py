"""[jobboard] options: operations as jobs, run by conductors."""
from oslo_config import cfg

group = cfg.OptGroup('jobboard', title='Jobboard and conductors')

opts = [
    cfg.BoolOpt(
        'enabled',
        default=False,
        help='Post each operation as a job on the jobboard, for a '
             '"resize-flows conductor" to run, instead of running its flow '
             'in the process that asked for it. The API and the CLI then '
             'return as soon as the job is posted (the CLI follows it with '
             '--wait).'),
    cfg.StrOpt(
        'backend_url',
        default='redis://127.0.0.1:6379',
        secret=True,
        help='Where the jobboard lives: redis://[:PASSWORD@]HOST[:PORT], '
             'TaskFlow\'s Redis jobboard. Every API process and every '
             'conductor must name the same one. A secret: its password '
             'is masked in every message and log line.'),
    cfg.StrOpt(
        'board_name',
        default='resize-flows',
        help='Name of the jobboard (a key namespace on the back end): '
             'conductors claim the jobs posted on the board of their '
             'name.'),
    cfg.IntOpt(
        'claim_expiry',
        default=60,
        min=2,
        help='Seconds a conductor\'s claim on a job lasts unless it is '
             'extended. A live conductor extends its claims every quarter '
             'of this; a dead one\'s claim runs out after it, and another '
             'conductor takes the job over and resumes its flow from the '
             'flow log.'),
    cfg.IntOpt(
        'simultaneous_jobs',
        default=1,
        min=1,
        help='Jobs a conductor runs at once, each flow in a thread of its '
             'own. More than one lets a conductor go on with other '
             'operations while one of them copies a disk; a conductor '
             'that dies then leaves all of them to be taken over.'),
    cfg.StrOpt(
        'conductor_name',
        help='Name a conductor claims jobs under (followed by its process '
             'id and a random suffix, so that two conductors never share '
             'one). Default: the host name.'),
    cfg.IntOpt(
        'max_attempts',
        default=3,
        min=1,
        help='Claims of a job by conductors before they give up on it. '
             'Each claim counts, a conductor that dies holding the job '
             'too (a claim that ends without trying the flow, because '
             'another process holds it or the conductor is stopping, does '
             'not). A job whose flow failed on this many attempts is not '
             'claimed again: it goes to the jobboard\'s trash ("job list": '
             'TRASHED), and its flow is stuck with the reason ("flow '
             'show") until an operator resumes or rolls it back.'),
    cfg.FloatOpt(
        'wait_poll_interval',
        default=0.5,
        min=0.05,
        help='Seconds between two looks at the flow log while an API '
             'caller or "--wait" follows a posted job.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
