"""[notifications] options: where instance.resize* notifications go."""
from oslo_config import cfg

group = cfg.OptGroup('notifications', title='Notifications')

opts = [
    cfg.ListOpt(
        'drivers',
        default=['log'],
        help='Notifier plugins that receive the instance.resize_prep, '
             'instance.resize, instance.resize_finish, '
             'instance.resize_confirm and instance.resize_revert '
             'notifications: names of entry points in the '
             '"resize_flows.notifiers" group. "log" (shipped) logs each '
             'one; an empty list sends none. A plugin that fails is logged '
             'and never breaks a flow.'),
]


def register_opts(conf):
    conf.register_group(group)
    conf.register_opts(opts, group=group)


def list_opts():
    return {group: opts}
