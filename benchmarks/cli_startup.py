"""CLI start-up: what a ``resize-flows`` command costs before it works.

Each command of the CLI is a new process that imports the package, finds
its commands through the ``resize_flows.cli`` entry points (stevedore) and
reads its configuration. This times, in one run and on the same state
directory (SQLite):

- ``python -c pass``: the interpreter alone;
- ``python -c 'import resize_flows.api'``: the import of the embedding API
  and everything under it, the floor of any command;
- ``resize-flows --version``, ``resize-flows help`` (loads every command)
  and ``resize-flows flavor list`` (one command and one database read);

and prints each as a median of ``--repeat`` runs and as a ratio to the
import floor. With ``--against VENV`` (another checkout's virtualenv, say
of an older commit) the same commands run from it too, interleaved with
ours, and the last column is ours over theirs. Timings are figures to
compare within one run, never test assertions.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 7] [--against DIR/.venv]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _once(argv, env):
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _cases(venv, conf):
    python = os.path.join(venv, 'bin', 'python')
    base = [os.path.join(venv, 'bin', 'resize-flows'), '--config-file', conf]
    return [
        ('python -c pass', [python, '-c', 'pass']),
        ('import resize_flows.api', [python, '-c', 'import resize_flows.api']),
        ('resize-flows --version', base + ['--version']),
        ('resize-flows help', base + ['help']),
        ('resize-flows flavor list', base + ['flavor', 'list']),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--against', metavar='VENV',
                        help='another checkout\'s virtualenv to time too')
    args = parser.parse_args()
    ours = os.path.dirname(os.path.dirname(sys.executable))
    venvs = [ours] + ([args.against] if args.against else [])
    with tempfile.TemporaryDirectory() as state:
        conf = os.path.join(state, 'resize-flows.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\nstate_dir = %s\n' % state)
        env = dict(os.environ, OS_USER_ID='admin', OS_PROJECT_ID='admin',
                   OS_ROLES='admin')
        subprocess.run([os.path.join(ours, 'bin', 'resize-flows'),
                        '--config-file', conf, 'db', 'sync'], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        cases = [_cases(venv, conf) for venv in venvs]
        times = [[[] for _ in cases[0]] for _ in venvs]
        for _ in range(args.repeat):
            for i, case in enumerate(cases[0]):
                for v, venv_cases in enumerate(cases):
                    times[v][i].append(_once(venv_cases[i][1], env))
    medians = [[statistics.median(t) for t in per] for per in times]
    floor = medians[0][1]
    print('%-28s %9s %9s%s' % ('command', 'median s', 'x import',
                               ' %9s %9s' % ('against', 'x against')
                               if args.against else ''))
    for i, (name, _argv) in enumerate(cases[0]):
        line = '%-28s %9.3f %9.2f' % (name, medians[0][i],
                                      medians[0][i] / floor)
        if args.against:
            line += ' %9.3f %9.2f' % (medians[1][i],
                                      medians[0][i] / medians[1][i])
        print(line)


if __name__ == '__main__':
    main()
