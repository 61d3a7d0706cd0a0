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
import floor. Timings are figures to compare within one run, never test
assertions.

    .venv/bin/python benchmarks/cli_startup.py [--repeat 7]
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def _median(argv, env, repeat):
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=7)
    args = parser.parse_args()
    cli = os.path.join(os.path.dirname(sys.executable), 'resize-flows')
    with tempfile.TemporaryDirectory() as state:
        conf = os.path.join(state, 'resize-flows.conf')
        with open(conf, 'w') as f:
            f.write('[DEFAULT]\nstate_dir = %s\n' % state)
        env = dict(os.environ, OS_USER_ID='admin', OS_PROJECT_ID='admin',
                   OS_ROLES='admin')
        base = [cli, '--config-file', conf]
        subprocess.run(base + ['db', 'sync'], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        cases = [
            ('python -c pass', [sys.executable, '-c', 'pass']),
            ('import resize_flows.api',
             [sys.executable, '-c', 'import resize_flows.api']),
            ('resize-flows --version', base + ['--version']),
            ('resize-flows help', base + ['help']),
            ('resize-flows flavor list', base + ['flavor', 'list']),
        ]
        results = [(name, _median(argv, env, args.repeat))
                   for name, argv in cases]
    floor = results[1][1]
    print('%-28s %9s %9s' % ('command', 'median s', 'x import'))
    for name, seconds in results:
        print('%-28s %9.3f %9.2f' % (name, seconds, seconds / floor))


if __name__ == '__main__':
    main()
