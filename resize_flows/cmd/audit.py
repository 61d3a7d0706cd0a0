"""The ``audit`` command: the records against the hosts, and repair."""
from cliff import lister

from resize_flows import api
from resize_flows.cmd import common

#: Exit statuses, as ``nova-manage placement audit``'s: nothing found;
#: findings left (listed, each with the command that would fix it);
#: everything found repaired.
EXIT_CLEAN = 0
EXIT_FOUND = 3
EXIT_REPAIRED = 4


class Audit(lister.Lister):
    """Compare the records with every host (or one) and list what does
    not match.

    Rows: kind, host, object, detail, and the fix (the command that would
    fix it, or "repaired"). Kinds: host (a host that does not answer; the
    audit goes on with the others), domain, power state, allocation,
    directory, disk, flow (interrupted or stuck, nobody holds it) and
    plugin NAME. --repair fixes the safe ones (allocations, recorded
    power states, the _resize/_revert directories of moves that ended)
    and never deletes a disk that a record refers to. Exit status: 0
    nothing found, 3 findings left, 4 everything found was repaired.
    """

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument('--host', help='Only this host.')
        parser.add_argument(
            '--repair', action='store_true',
            help='Fix allocations, recorded power states and the '
                 '_resize/_revert directories of moves that ended.')
        return parser

    def take_action(self, parsed):
        rows = api.audit(common.caller_context(self.app), host=parsed.host,
                         repair=parsed.repair)
        if not rows:
            self._status = EXIT_CLEAN
        elif all(r['fix'] == 'repaired' for r in rows):
            self._status = EXIT_REPAIRED
        else:
            self._status = EXIT_FOUND
        cols = ('Kind', 'Host', 'Object', 'Detail', 'Fix')
        return cols, [(r['kind'], r['host'], r['object'], r['detail'],
                       r['fix']) for r in rows]

    def run(self, parsed_args):
        self._status = EXIT_CLEAN
        super().run(parsed_args)
        return self._status
