"""The test guest's console log read as a story: which report is the
running boot's, how its last shutdown went, and one readable line of each.

A console log is appended to across boots and, when a move carries it,
across hosts, so the report that counts is the latest one after the last
``RF-SHUTDOWN``: until the guest booted again after a move there is none.
``python -m resize_flows.testing.guestlog report|shutdown`` reads a log on
stdin and prints that line (exit 3 when there is none yet), e.g.::

    resize-flows server console log vm1 | \\
        python -m resize_flows.testing.guestlog report
"""
import argparse
import json
import sys

from resize_flows.testing import guestinit

NOTHING_YET = 3


def events(console_text):
    """The guest's report and shutdown lines, oldest first, as (tag,
    dict) pairs; lines that do not parse are skipped."""
    found = []
    for line in console_text.splitlines():
        for tag in (guestinit.REPORT, guestinit.SHUTDOWN):
            at = line.find(tag + ' ')
            if at < 0:
                continue
            try:
                value = json.loads(line[at + len(tag) + 1:])
            except ValueError:
                continue
            if isinstance(value, dict):
                found.append((tag, value))
    return found


def current_report(console_text):
    """The running boot's report: the latest after the last shutdown, or
    None when the guest has not reported since."""
    current = None
    for tag, value in events(console_text):
        current = value if tag == guestinit.REPORT else None
    return current


def last_shutdown(console_text):
    """The last ``RF-SHUTDOWN`` line's dict, or None."""
    found = [v for t, v in events(console_text) if t == guestinit.SHUTDOWN]
    return found[-1] if found else None


def _size(num_bytes):
    for unit, scale in (('GiB', 1 << 30), ('MiB', 1 << 20)):
        if num_bytes >= scale:
            return '%.4g %s' % (num_bytes / scale, unit)
    return '%d KiB' % (num_bytes // 1024)


def report_line(report):
    """One readable line of a report: vCPUs, memory, disks, swap, short
    checksums, MAC, config drive uuid, the disks' serials and every
    NIC's MAC."""
    disks = ', '.join('%s %s' % (name, _size(size)) for name, size
                      in sorted((report.get('disks') or {}).items()))
    swap = ', '.join('%s %s' % (name, _size(kib * 1024)) for name, kib
                     in sorted((report.get('swap') or {}).items()))
    sums = ', '.join('%s/%s %s' % (disk, name, digest[:8])
                     for disk, files in sorted(
                         (report.get('files') or {}).items())
                     for name, digest in sorted(files.items()))
    drive = report.get('config_drive') or {}
    serials = ', '.join('%s %s' % pair for pair in sorted(
        (report.get('serials') or {}).items()))
    macs = ', '.join('%s %s' % pair for pair in sorted(
        (report.get('macs') or {}).items()))
    return ('boot %s: %s vCPU, %s RAM; disks %s; swap %s; data %s; '
            'MAC %s; config drive %s; serials %s; NICs %s' % (
                report.get('boot'), report.get('cpus'),
                _size((report.get('mem_kb') or 0) * 1024), disks or 'none',
                swap or 'none', sums or 'none', report.get('mac'),
                drive.get('uuid'), serials or 'none', macs or 'none'))


def shutdown_line(shutdown):
    """One readable line of a shutdown."""
    return 'boot %s shut itself down: %s (press %s)' % (
        shutdown.get('boot'), shutdown.get('reason'), shutdown.get('press'))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m resize_flows.testing.guestlog',
        description='Read the test guest\'s console log on stdin.')
    parser.add_argument('what', choices=('report', 'shutdown'),
                        help='report: the running boot\'s report; '
                        'shutdown: the last RF-SHUTDOWN')
    parser.add_argument('--json', action='store_true',
                        help='print the line\'s JSON as the guest wrote it')
    args = parser.parse_args(argv)
    text = sys.stdin.read()
    if args.what == 'report':
        found, line = current_report(text), report_line
    else:
        found, line = last_shutdown(text), shutdown_line
    if found is None:
        print('no %s yet' % args.what, file=sys.stderr)
        return NOTHING_YET
    print(json.dumps(found, sort_keys=True) if args.json else line(found))
    return 0


if __name__ == '__main__':
    sys.exit(main())
