#!/bin/sh
# The demo behind `make demo`: build a FROM-scratch image of a small static C program,
# show what is in it, and run it with runc when this machine can (root, runc and umoci).
set -eu
cd "$(dirname "$0")/.."

echo "==> compiling examples/hello/hello.c statically"
if command -v cc >/dev/null 2>&1 && cc -static -Os -o examples/hello/hello examples/hello/hello.c 2>/dev/null; then
    program=examples/hello/hello
elif [ -x /bin/busybox ]; then
    echo "    (no static C toolchain here: using busybox instead)"
    program=/bin/busybox
else
    echo "demo: needs a C compiler with static libc (Debian: apt-get install gcc libc6-dev)" >&2
    exit 1
fi

echo "==> SOURCE_DATE_EPOCH=0 zeroimage build --with all --entrypoint-path /hello -o hello.tar $program"
SOURCE_DATE_EPOCH=0 zeroimage build --with all --entrypoint-path /hello -o hello.tar "$program"
echo
echo "==> zeroimage inspect oci-archive:hello.tar"
zeroimage inspect oci-archive:hello.tar
echo

if [ "$(id -u)" = 0 ] && command -v runc >/dev/null 2>&1 && command -v umoci >/dev/null 2>&1; then
    echo "==> running it with runc (no Docker involved)"
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/layout"
    tar -xf hello.tar -C "$work/layout"
    umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
    sed -i 's/"terminal": *true/"terminal": false/' "$work/bundle/config.json"
    runc --root "$work/state" run "zeroimage-demo-$$" --bundle "$work/bundle"
else
    echo "==> to run it:  podman run --rm oci-archive:hello.tar"
    echo "    or load it into Docker:  zeroimage build -o docker-archive:hello-docker.tar:hello:latest $program && docker load -i hello-docker.tar"
fi
