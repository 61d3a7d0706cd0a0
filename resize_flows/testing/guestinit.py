"""The test guest's own programs: its ``/init`` and the action acpid runs
on the ACPI power button, shell scripts for busybox, and the tags of the
lines they print on the serial console. :mod:`.guest` builds them into
the initramfs and describes what they report; a change here is a change
of the build's inputs (its cache key)."""

# The directory of known data on each disk the guest reports on.
DATA_DIR = 'rf-data'
REPORT = 'RF-REPORT'
SHUTDOWN = 'RF-SHUTDOWN'
HEARTBEAT = 'RF-HEARTBEAT'
POWER_BUTTON_PRESS = 'RF-POWER-BUTTON'

INIT = r'''#!/bin/sh
# The resize-flows test guest: report what this machine sees, once per
# boot, then a heartbeat; acpid powers it off on the ACPI power button.
# This shell is PID 1: it must never exit (the kernel would panic).
PATH=/bin
export PATH
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

for mod in $(cat /etc/rf-modules); do
    insmod /lib/modules/$mod.ko
done
tries=0
while [ ! -b /dev/vda ] && [ $tries -lt 100 ]; do
    usleep 100000
    tries=$((tries + 1))
done

json_str() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# {"relative path": "sha256", ...} of the files under $1/rf-data.
files_json() {
    (
        printf '{'
        cd "$1/rf-data" 2>/dev/null || { printf '}'; exit 0; }
        sep=''
        find . -type f | sort | while read -r f; do
            sum=$(sha256sum "$f" | cut -d' ' -f1)
            printf '%s%s: "%s"' "$sep" "$(json_str "${f#./}")" "$sum"
            sep=', '
        done
        printf '}'
    )
}

# The guest's own data, once per ephemeral disk: 1 MiB that this guest
# makes itself (a random uuid, repeated), written under another name,
# synced, then renamed; a disk that has it keeps it.
guest_data() {
    [ -e "$1/rf-data/guest-written" ] && return 0
    mkdir -p "$1/rf-data" || return 0
    chunk=${TMPDIR:-/tmp}/rf-chunk
    cat /proc/sys/kernel/random/uuid >$chunk
    n=0
    while [ $n -lt 15 ]; do
        cat $chunk $chunk >$chunk.2
        mv $chunk.2 $chunk
        n=$((n + 1))
    done
    head -c 1048576 $chunk >"$1/rf-data/.guest-written" &&
        sync && mv "$1/rf-data/.guest-written" "$1/rf-data/guest-written"
    sync
    rm -f $chunk
}

boot=null
mkdir -p /mnt/vda
if mount -t ext4 /dev/vda /mnt/vda 2>/dev/null; then
    count=$(cat /mnt/vda/rf-boot-count 2>/dev/null)
    case "$count" in
        ''|*[!0-9]*) count=0 ;;
    esac
    boot=$((count + 1))
    echo $boot >/mnt/vda/rf-boot-count
    sync
fi
echo $boot >/run/rf-boot

disks=''
files=''
serials=''
for dev in /sys/block/vd*; do
    [ -e "$dev" ] || continue
    name=${dev##*/}
    bytes=$(($(cat $dev/size) * 512))
    disks="$disks${disks:+, }\"$name\": $bytes"
    # The disk's serial (a volume's id), when it has one.
    serial=$(cat $dev/serial 2>/dev/null)
    if [ -n "$serial" ]; then
        serials="$serials${serials:+, }\"$name\": $(json_str "$serial")"
    fi
    if [ $name = vda ]; then
        [ $boot = null ] && continue
    else
        # vdb is the ephemeral disk (Nova's order): the guest writes to it.
        mode=ro
        [ $name = vdb ] && mode=rw
        mkdir -p /mnt/$name
        if ! mount -t ext4 -o $mode /dev/$name /mnt/$name 2>/dev/null; then
            sig=$(dd if=/dev/$name bs=1 skip=4086 count=10 2>/dev/null)
            [ "$sig" = SWAPSPACE2 ] && swapon /dev/$name 2>/dev/null
            continue
        fi
        [ $name = vdb ] && guest_data /mnt/vdb
    fi
    files="$files${files:+, }\"$name\": $(files_json /mnt/$name)"
done
# {"vdc": size in KiB, ...} of the swap the kernel took.
swap=$(awk '$1 ~ /^\/dev\// {
    printf "%s\"%s\": %s", sep, substr($1, 6), $3; sep = ", " }' /proc/swaps)

config_drive=null
if [ -b /dev/sr0 ]; then
    label=$(dd if=/dev/sr0 bs=2048 skip=16 count=1 2>/dev/null |
            dd bs=1 skip=40 count=32 2>/dev/null | tr -d '\000' |
            sed 's/ *$//')
    uuid=''
    mkdir -p /mnt/cd
    if mount -t iso9660 -o ro /dev/sr0 /mnt/cd 2>/dev/null; then
        uuid=$(sed -n 's/.*"uuid" *: *"\([^"]*\)".*/\1/p' \
               /mnt/cd/openstack/latest/meta_data.json 2>/dev/null |
               head -n 1)
    fi
    config_drive="{\"label\": $(json_str "$label")"
    config_drive="$config_drive, \"uuid\": $(json_str "$uuid")}"
fi

mac=null
if [ -r /sys/class/net/eth0/address ]; then
    mac=$(json_str "$(cat /sys/class/net/eth0/address)")
fi
# {"eth0": MAC, "eth1": MAC, ...}: every NIC but the loopback.
macs=''
for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ "$name" = lo ] && continue
    [ -r $dev/address ] || continue
    macs="$macs${macs:+, }\"$name\": $(json_str "$(cat $dev/address)")"
done

cpus=$(grep -c '^processor' /proc/cpuinfo)
mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)

acpid -c /etc/acpi -l /run/acpid.log -p /run/acpid.pid

# One write, so that no kernel message lands inside the line.
report="{\"boot\": $boot, \"cpus\": $cpus, \"mem_kb\": $mem_kb"
report="$report, \"disks\": {$disks}, \"files\": {$files}"
report="$report, \"swap\": {$swap}, \"config_drive\": $config_drive"
report="$report, \"serials\": {$serials}, \"macs\": {$macs}"
echo "RF-REPORT $report, \"mac\": $mac}"

beat=0
while :; do
    sleep 5
    beat=$((beat + 1))
    echo "RF-HEARTBEAT {\"boot\": $boot, \"beat\": $beat}"
done
'''

# acpid runs this on each press of the power button: one RF-POWER-BUTTON
# line per press; the first press not ignored says RF-SHUTDOWN, then a
# clean power-off (plain `poweroff` does nothing with a shell as PID 1).
POWER_BUTTON = r'''#!/bin/sh
exec >/dev/console 2>&1
boot=$(cat /run/rf-boot)
press=$(($(cat /run/rf-presses 2>/dev/null || echo 0) + 1))
echo $press >/run/rf-presses
# rf.ignore_acpi=N on the kernel command line: ignore the first N presses.
ignore=$(sed -n 's/.*rf\.ignore_acpi=\([0-9]*\).*/\1/p' /proc/cmdline)
action=shutdown
if [ $press -le "${ignore:-0}" ]; then
    action=ignored
elif ! mkdir /run/rf-stopping 2>/dev/null; then
    action=stopping
fi
line="{\"boot\": $boot, \"press\": $press"
echo "RF-POWER-BUTTON $line, \"action\": \"$action\"}"
[ $action = shutdown ] || exit 0
echo "RF-SHUTDOWN {\"boot\": $boot, \"reason\": \"acpi-power-button\"," \
    "\"press\": $press}"
sync
for mnt in /mnt/cd /mnt/vd*; do
    [ $mnt = /mnt/vda ] || umount $mnt 2>/dev/null
done
umount /mnt/vda 2>/dev/null
sync
poweroff -f
'''
