#!/bin/bash
# Install the Debian packages resize-flows needs to build and to run real
# QEMU guests, when any is missing. Called by `make deps` (and so by
# `make test` and `make demo`).
#
# Nothing is installed, and apt-get is not run, when every package is
# already there. As root the missing ones are installed; otherwise the exact
# apt-get line is printed and the script exits 1, so make stops.
#
# Environment:
#   PYTHON                 interpreter the virtualenv is made with (python3)
#   RESIZE_FLOWS_DEB_PACKAGES
#                          replaces the package list (to test this script)
set -euo pipefail

PYTHON=${PYTHON:-python3}

# libvirt-python is built from source: headers, pkg-config and a compiler.
# QEMU and the libvirt QEMU driver run the integration tests and the demo;
# Redis (started by its package) is the jobboard of the conductor tests.
# ssh and rsync reach hosts on other machines; the tests run OpenSSH's
# sshd (not the system service: Debian's package enables that one too) as
# those other machines. The test guest (make guest-image) is built from
# busybox-static, cpio, kmod (depmod, modprobe), e2fsprogs (mke2fs -d) and
# genisoimage (config drives); its kernel comes from Debian's mirror.
PACKAGES=${RESIZE_FLOWS_DEB_PACKAGES:-"
    libvirt-dev
    pkg-config
    qemu-system-x86
    qemu-utils
    libvirt-daemon-driver-qemu
    libvirt-daemon-system
    libvirt-clients
    redis-server
    openssh-client
    openssh-server
    rsync
    busybox-static
    cpio
    kmod
    e2fsprogs
    genisoimage
"}

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "install-deps: not a Debian system; make sure the equivalents of" \
         "these are installed:" $PACKAGES >&2
    exit 0
fi

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]
}

missing=()
for pkg in $PACKAGES; do
    installed "$pkg" || missing+=("$pkg")
done

if [ -z "${RESIZE_FLOWS_DEB_PACKAGES:-}" ]; then
    # `python3 -m venv` needs ensurepip, which Debian ships apart
    # (python3-venv); building libvirt-python needs Python.h and a compiler.
    if command -v "$PYTHON" >/dev/null 2>&1; then
        if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
            missing+=(python3-venv)
        fi
        if ! "$PYTHON" -c 'import os, sysconfig, sys
sys.exit(not os.path.exists(
    os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
                >/dev/null 2>&1; then
            missing+=(python3-dev)
        fi
    else
        missing+=(python3 python3-venv python3-dev)
    fi
    if ! command -v cc >/dev/null 2>&1; then
        missing+=(gcc)
    fi
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

install_line="apt-get install -y --no-install-recommends ${missing[*]}"

if [ "$(id -u)" -ne 0 ]; then
    {
        echo "resize-flows needs these Debian packages, which are missing:"
        echo "    ${missing[*]}"
        echo "Install them as root (e.g. with sudo), then run make again:"
        echo "    apt-get update && $install_line"
    } >&2
    exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
