#!/usr/bin/env bash
# nsinit.sh ROOT READY: PID 1 of a fresh root's namespaces (started by start.sh through
# `unshare --net --mount --pid --uts --ipc --fork`). Mounts /proc, /sys, /dev (the host's,
# bound, with a private /dev/shm) and a tmpfs /run in ROOT, brings up lo, sets the hostname
# from ROOT/etc/hostname, touches READY, then reaps children for ever: daemons that the
# quickstart starts double-fork and are re-parented to PID 1, which must wait() for them
# or killed ones stay zombies (and "is clamd running?" checks see them). SIGTERM ends it,
# and with it, by the kernel, every process of the namespace.
set -e
ROOT=$1
READY=$2
mount --make-rprivate /   # nothing mounted here reaches the host
mount -t proc proc "$ROOT/proc"
mount --rbind /dev "$ROOT/dev"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOT/dev/shm"
mount -t sysfs sysfs "$ROOT/sys"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs "$ROOT/run"
mkdir -p "$ROOT/run/lock" && chmod 1777 "$ROOT/run/lock"
ip link set lo up
hostname "$(cat "$ROOT/etc/hostname")"
echo ready >"$READY"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
exec "$PY" -c '
# mailwarden-fresh-root-init: reap every child, exit on SIGTERM
import os, signal, time
signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(1)
'
