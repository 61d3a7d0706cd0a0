#!/bin/bash
# The main job, end to end, on the embedded default: SQLite and real QEMU
# guests, one libvirt daemon per simulated host. Builds the test guest
# (resize_flows.testing.guest: a Debian kernel and a busybox initramfs,
# cached), makes it an image, boots it on host1 with an ephemeral disk,
# swap and a config drive, resizes it to a bigger flavor onto host2 and
# confirms, then migrates it back to host1 and reverts, printing every
# step and, after each, what the guest itself reports on its serial
# console (and its own clean shutdown before each move), with a port and a
# volume of the reference plugins attached. Everything lives
# under $DEMO_DIR (default /var/tmp/rf-demo-<uid>) and is removed first.
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
guestlog() {  # guestlog report|shutdown [--json]: from its console log
    rf server console log demo-vm |
        python -m resize_flows.testing.guestlog "$@" 2>/dev/null
}
# The guest's own report of its running boot, once it has written it
# (a boot under TCG takes 10-30 s; 300 s is never a measure of speed).
guest_report() {
    local deadline=$((SECONDS + 300))
    until guestlog report --json >"$DEMO_DIR/report.json"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "demo FAILED: no report from the guest in 300 s:" >&2
            rf server console log demo-vm --lines 30 >&2
            exit 1
        fi
        sleep 1
    done
    echo "guest reports: $(guestlog report)"
}
# One value of the report: report_value 'python expression on r'
report_value() {
    python -c "import json, sys; r = json.load(sys.stdin); print($1)" \
        <"$DEMO_DIR/report.json"
}
# The guest's data must be the first report's, byte for byte (sha256).
expect_same_data() {
    if [ "$(report_value "sorted((k, v) for k, v in r['files'].items() if k != 'vdd')")" != "$first_data" ]
    then
        echo "demo FAILED: the guest's data changed:" >&2
        cat "$DEMO_DIR/report.json" >&2
        exit 1
    fi
    echo "ok: guest's data unchanged (sha256 of every file under rf-data/)"
}
# The port's NIC and the volume, as the guest sees them.
expect_plugins() {
    expect "guest's NICs hold the port's MAC" \
        "$(report_value "'$port_mac' in r['macs'].values()")" True
    # virtio-blk keeps 20 bytes of a serial: the volume id's first 20.
    expect "guest's vdd is the volume" "$(report_value "r['serials'].get('vdd')")" "${volume:0:20}"
    expect "volume's data, read by the guest" \
        "$(report_value "r['files']['vdd'].get('volume.bin')")" "$volume_sum"
}
guest_shutdown() {
    echo "guest before the move: RF-SHUTDOWN $(guestlog shutdown --json)"
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
# The two reference plugins: a port (a NIC with a MAC for life) and a
# file-backed volume follow the server through every move.
plugins = ports, volumes

[compute]
# The guest answers the ACPI power button: a clean shutdown before a move
# (the power button again every shutdown_retry_interval seconds, 10, up
# to shutdown_timeout, 60; Nova's defaults).
CONF

step "the test guest: a Debian kernel and a busybox initramfs (cached)"
guest_files=$(python -m resize_flows.testing.guest build)
kernel=$(echo "$guest_files" | sed -n 1p)
ramdisk=$(echo "$guest_files" | sed -n 2p)
echo "$kernel"
echo "$ramdisk"
# Its root disk: an ext4 file system with known files under rf-data/.
python - "$DEMO_DIR/root.qcow2" <<'PY'
import os, sys
from resize_flows.testing import guest
guest.make_data_disk(sys.argv[1], {
    'hello.txt': b'hello from the demo image\n',
    'random.bin': os.urandom(512 * 1024)})
PY

step "database"
rf db sync

step "two hosts, each its own libvirt daemon running real QEMU"
rf host create host1 --vcpus 4 --memory-mb 1024 --disk-gb 20
rf host create host2 --vcpus 4 --memory-mb 1024 --disk-gb 20
rf flavor create tiny --vcpus 1 --ram 128 --disk 1 --ephemeral 1 --swap 16
rf flavor create small --vcpus 2 --ram 192 --disk 2 --ephemeral 2 --swap 32
rf image create guest --file "$DEMO_DIR/root.qcow2" \
    --kernel "$kernel" --ramdisk "$ramdisk"

step "boot demo-vm on host1 from the image, with a config drive"
rf server create demo-vm --flavor tiny --host host1 --image guest \
    --config-drive
expect "host" "$(field demo-vm host)" host1
guest_report
expect "guest's vCPUs" "$(report_value "r['cpus']")" 1
uuid=$(field demo-vm uuid)
expect "guest's config drive uuid" "$(report_value "r['config_drive']['uuid']")" "$uuid"
first_data=$(report_value "sorted((k, v) for k, v in r['files'].items() if k != 'vdd')")
first_mac=$(report_value "r['mac']")
first_mem=$(report_value "r['mem_kb']")

step "a port and a volume (the ports and volumes plugins) for demo-vm"
rf port create demo-port --server demo-vm
port_mac=$(rf port show demo-port -f value -c mac_address)
volume=$(rf volume create demo-data --size 1 --disk-format raw)
# Known files on the volume: an ext4 file system written into its file
# in place (the guest mounts it read-only and reports their sha256).
mkdir -p "$DEMO_DIR/volume-data/rf-data"
head -c 262144 /dev/urandom >"$DEMO_DIR/volume-data/rf-data/volume.bin"
volume_sum=$(sha256sum <"$DEMO_DIR/volume-data/rf-data/volume.bin" | cut -d' ' -f1)
mke2fs -q -t ext4 -F -d "$DEMO_DIR/volume-data" \
    "$(rf volume show demo-data -f value -c path)"
rf server volume attach demo-vm demo-data
rf port list --server demo-vm
echo "(attached live; the guest reports them from its next boot on)"

step "resize demo-vm to flavor small (onto host2)"
rf server resize demo-vm --flavor small
expect "vm_state" "$(field demo-vm vm_state)" resized
expect "host" "$(field demo-vm host)" host2

step "confirm the resize"
rf server resize confirm demo-vm
rf server show demo-vm
expect "vm_state" "$(field demo-vm vm_state)" active
expect "flavor" "$(field demo-vm flavor)" small
expect "hypervisor" "$(field demo-vm hypervisor)" "Running, 2 vCPU, 192 MB"
guest_shutdown
guest_report
expect "guest's vCPUs" "$(report_value "r['cpus']")" 2
expect "guest's memory grew" "$(report_value "r['mem_kb'] > $first_mem")" True
expect "guest's disks" "$(report_value "r['disks']['vda'] >> 30, r['disks']['vdb'] >> 30, r['disks']['vdc'] >> 20")" "2 2 32"
expect_same_data
expect "guest's MAC" "$(report_value "r['mac']")" "$first_mac"
expect_plugins
rf port show demo-port -f value -c bindings
rf volume show demo-data -f value -c attachments

step "cold-migrate demo-vm (back to host1)"
rf server migrate demo-vm
expect "host" "$(field demo-vm host)" host1
guest_shutdown
guest_report
expect_plugins

step "revert the migration"
rf server resize revert demo-vm
rf server show demo-vm
expect "host" "$(field demo-vm host)" host2
expect "vm_state" "$(field demo-vm vm_state)" active
expect "hypervisor" "$(field demo-vm hypervisor)" "Running, 2 vCPU, 192 MB"
guest_report
expect "guest's vCPUs" "$(report_value "r['cpus']")" 2
expect_same_data
expect "guest's MAC" "$(report_value "r['mac']")" "$first_mac"
expect "guest's config drive uuid" "$(report_value "r['config_drive']['uuid']")" "$uuid"
expect_plugins
rf port show demo-port -f value -c bindings
rf volume show demo-data -f value -c attachments

step "what happened"
rf server migration list
rf server event list demo-vm
rf host list

step "clean up: the guest, its port and volume, then the hosts and their daemons"
rf server delete demo-vm
rf port delete demo-port
rf volume delete demo-data
rf host delete host1
rf host delete host2
echo
echo "demo finished: resize + confirm and migrate + revert of a real guest with a port and a volume, seen from inside it"
