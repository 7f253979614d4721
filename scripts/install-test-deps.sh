#!/bin/sh
# Install the Debian packages the tests and benchmarks use as independent peers, when missing.
# Usage: install-test-deps.sh [EXTRA-PACKAGE...]
#
# Another apt or dpkg may be running (unattended upgrades, a second test run): wait for its locks
# rather than fail. apt-get install waits for dpkg's lock by itself (DPkg::Lock::Timeout); apt-get
# update takes the package lists' lock, which apt 2.6 (Debian 12) does not wait for, so it is
# retried here while another apt holds it.
set -eu

LOCK_WAIT=${LOCK_WAIT:-300} # seconds

need() { # need COMMAND PACKAGE (daemons live in sbin, which a user's PATH may lack)
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || add "$2"
}
add() {
    case " $missing " in *" $1 "*) ;; *) missing="$missing $1" ;; esac
}
missing=""
need docker-registry docker-registry
need htpasswd apache2-utils
need openssl openssl
need skopeo skopeo
need umoci umoci
need oci-image-tool oci-image-tool
need runc runc
need busybox busybox-static
need pigz pigz
need zstd zstd
need qemu-aarch64-static qemu-user-static
need cc gcc
need dockerd docker.io
need containerd containerd
need ctr containerd
need podman podman
# Go's own reading of build info (go version -m), the reference the SBOM's Go reader is checked against
need go golang-go
need objcopy binutils
# 32-bit ARM cross compilers: programs whose .ARM.attributes name the ARM version they need. Their
# C libraries are only recommended by the compilers, and apt here installs no recommends.
command -v arm-linux-gnueabi-gcc >/dev/null 2>&1 || add gcc-arm-linux-gnueabi
command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || add gcc-arm-linux-gnueabihf
[ -e /usr/arm-linux-gnueabi/lib/crt1.o ] || add libc6-dev-armel-cross
[ -e /usr/arm-linux-gnueabihf/lib/crt1.o ] || add libc6-dev-armhf-cross
[ -x /usr/bin/time ] || add time
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ "$(uname -m)" != x86_64 ] || add libc6-dev
for extra in "$@"; do need "$extra" "$extra"; done

[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-test-deps: missing Debian packages:$missing (not root and no sudo: tests that need them will be skipped)" >&2
    exit 0
fi

apt_update() {
    waited=0
    while ! out=$($SUDO apt-get update -qq 2>&1); do
        case $out in
        *"Could not get lock"* | *"Unable to lock"*) ;;
        *) echo "$out" >&2 && return 1 ;;
        esac
        if [ "$waited" -ge "$LOCK_WAIT" ]; then
            echo "install-test-deps: another apt held its lock for ${LOCK_WAIT} s: $out" >&2
            return 1
        fi
        [ "$waited" -gt 0 ] || echo "install-test-deps: waiting for another apt to finish" >&2
        sleep 5
        waited=$((waited + 5))
    done
}

echo "install-test-deps: installing$missing" >&2
apt_update
# shellcheck disable=SC2086 # one word per package
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout="$LOCK_WAIT" $missing >/dev/null
