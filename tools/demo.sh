#!/bin/bash
# The main job, end to end, on the embedded default: SQLite and real QEMU
# guests, one libvirt daemon per simulated host. Boots a tiny guest on
# host1, resizes it to a bigger flavor onto host2 and confirms, then
# migrates it back to host1 and reverts, printing every step. Everything
# lives under $DEMO_DIR (default /var/tmp/rf-demo-<uid>) and is removed
# first.
set -euo pipefail
cd "$(dirname "$0")/.."

# As root the hosts' daemons run as an unprivileged user, who must be able
# to reach the state directory: /var/tmp is reachable wherever the clone
# is. The path is short because libvirt puts each guest's QEMU monitor
# socket deep below it and a Unix socket path holds 107 bytes at most.
DEMO_DIR=${DEMO_DIR:-/var/tmp/rf-demo-$(id -u)}
CONF_FILE=$DEMO_DIR/resize-flows.conf
rf() { resize-flows --config-file "$CONF_FILE" "$@"; }
step() { printf '\n=== %s\n' "$*"; }
field() { rf server show "$1" -f value -c "$2"; }
expect() {  # expect WHAT ACTUAL WANTED
    if [ "$2" != "$3" ]; then
        echo "demo FAILED: $1 is '$2', expected '$3'" >&2
        exit 1
    fi
    echo "ok: $1 = $3"
}

# A previous demo's hosts may still run: stop them before starting over.
if [ -f "$CONF_FILE" ]; then
    for vm in $(rf server list -f value -c ID 2>/dev/null); do
        rf server resize revert "$vm" -q >/dev/null 2>&1 || true
        rf server delete "$vm" || true
    done
    for h in $(rf host list -f value -c Name 2>/dev/null); do
        rf host delete "$h" || true
    done
fi
rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
cat > "$CONF_FILE" <<CONF
[DEFAULT]
state_dir = $DEMO_DIR

[compute]
# The demo's guests boot a blank disk: no OS answers an ACPI shutdown.
shutdown_timeout = 0
CONF

step "database"
rf db sync

step "two hosts, each its own libvirt daemon running real QEMU"
rf host create host1 --vcpus 4 --memory-mb 1024 --disk-gb 20
rf host create host2 --vcpus 4 --memory-mb 1024 --disk-gb 20
rf flavor create tiny --vcpus 1 --ram 64 --disk 1
rf flavor create small --vcpus 2 --ram 96 --disk 2

step "boot demo-vm on host1"
rf server create demo-vm --flavor tiny --host host1
expect "host" "$(field demo-vm host)" host1

step "resize demo-vm to flavor small (onto host2)"
rf server resize demo-vm --flavor small
expect "vm_state" "$(field demo-vm vm_state)" resized
expect "host" "$(field demo-vm host)" host2

step "confirm the resize"
rf server resize confirm demo-vm
rf server show demo-vm
expect "vm_state" "$(field demo-vm vm_state)" active
expect "flavor" "$(field demo-vm flavor)" small
expect "hypervisor" "$(field demo-vm hypervisor)" "Running, 2 vCPU, 96 MB"

step "cold-migrate demo-vm (back to host1)"
rf server migrate demo-vm
expect "host" "$(field demo-vm host)" host1

step "revert the migration"
rf server resize revert demo-vm
rf server show demo-vm
expect "host" "$(field demo-vm host)" host2
expect "vm_state" "$(field demo-vm vm_state)" active
expect "hypervisor" "$(field demo-vm hypervisor)" "Running, 2 vCPU, 96 MB"

step "what happened"
rf server migration list
rf server event list demo-vm
rf host list

step "clean up: the guest, then the hosts and their daemons"
rf server delete demo-vm
rf host delete host1
rf host delete host2
echo
echo "demo finished: resize + confirm and migrate + revert on real QEMU guests"
