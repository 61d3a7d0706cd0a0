# resize-flows: developer entry points.
#
#   make test            system packages, .venv, then pytest over tests/ on
#                        two workers (integration tests included: they run
#                        real QEMU; the crash matrix as a 22-case sample,
#                        5 of the 14 crash-window kills, 8 seeds of kills
#                        at random instants; half the cases of each
#                        fault sweep marked "sweep")
#   make crash-matrix    the whole crash matrix (180 real process deaths on
#                        real QEMU, about 30 minutes), the 14 crash-window
#                        kills, 40 seeds of kills at random instants and
#                        the other half of each sweep; CI runs it too
#   make demo            system packages, .venv, then tools/demo.sh
#   make guest-image     build the test guest (kernel + initramfs from
#                        Debian packages, cached) into $(GUEST_DIR):
#                        $$RESIZE_FLOWS_STATE_DIR when set, otherwise
#                        /var/tmp/rf-guest-<uid>; prints the two paths
#   make bench           every benchmark in benchmarks/ (about 15 minutes;
#                        results in benchmarks/README.md)
#   make sample-config   regenerate etc/resize-flows.conf.sample and
#                        etc/policy.yaml.sample
#   make deps | venv     just one of the first two steps
#   make clean           remove .venv, caches and build output
#
# Extra pytest arguments: make test PYTEST_ARGS='-k migrations -x'

PYTHON ?= python3
VENV := .venv
# Written once `pip install -e '.[test]'` succeeded; redone when the
# package's metadata changes, so `make venv` is cheap when nothing did.
VENV_STAMP := $(VENV)/.resize-flows-installed
PYTEST_ARGS ?=

# Two workers: this is a 2-core machine and most tests wait on disks,
# databases and QEMU rather than on the CPU.
PYTEST_WORKERS ?= 2

# Where `make guest-image` builds (the integration tests use the same rule).
GUEST_DIR ?= $(or $(RESIZE_FLOWS_STATE_DIR),/var/tmp/rf-guest-$(shell id -u))

.PHONY: all deps venv test crash-matrix demo guest-image bench sample-config clean

all: test

deps:
	PYTHON=$(PYTHON) tools/install-deps.sh

venv: $(VENV_STAMP)

# deps is order-only: it is checked every time, but only a change to the
# package's metadata reinstalls the package.
$(VENV_STAMP): setup.cfg pyproject.toml | deps
	if ! $(VENV)/bin/python -c '' 2>/dev/null; then \
	    $(PYTHON) -m venv --clear $(VENV); \
	fi
	$(VENV)/bin/python -m pip install --disable-pip-version-check \
	    --progress-bar off -e '.[test]'
	touch $@

test: venv
	$(VENV)/bin/pytest tests/ -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

crash-matrix: venv
	$(VENV)/bin/pytest tests/ -m crash_matrix -n $(PYTEST_WORKERS) \
	    $(PYTEST_ARGS)

demo: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH tools/demo.sh

guest-image: venv
	$(VENV)/bin/python -m resize_flows.testing.guest build $(GUEST_DIR)

# Timings, never tests: each script compares its rivals in one run.
bench: venv
	$(VENV)/bin/python benchmarks/flow_log.py
	$(VENV)/bin/python benchmarks/resize_ops.py
	$(VENV)/bin/python benchmarks/flow_list.py
	$(VENV)/bin/python benchmarks/disk_copy.py
	$(VENV)/bin/python benchmarks/instance_move.py
	$(VENV)/bin/python benchmarks/conductors.py
	$(VENV)/bin/python benchmarks/remote_hosts.py
	$(VENV)/bin/python benchmarks/drain.py

sample-config: venv
	$(VENV)/bin/oslo-config-generator \
	    --config-file etc/resize-flows-config-generator.conf
	$(VENV)/bin/oslopolicy-sample-generator \
	    --config-file etc/resize-flows-policy-generator.conf

clean:
	rm -rf $(VENV) build dist .pytest_cache .hypothesis *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
