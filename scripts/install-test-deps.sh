#!/bin/sh
# Install the Debian packages the tests and benchmarks use as independent peers, when missing.
# Usage: install-test-deps.sh [EXTRA-PACKAGE...]
set -eu

need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
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
[ -x /usr/bin/time ] || missing="$missing time"
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ "$(uname -m)" != x86_64 ] || missing="$missing libc6-dev"
for extra in "$@"; do need "$extra" "$extra"; done

[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-test-deps: missing Debian packages:$missing (not root and no sudo: tests that need them will be skipped)" >&2
    exit 0
fi
echo "install-test-deps: installing$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
