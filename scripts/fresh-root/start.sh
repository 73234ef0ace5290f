#!/usr/bin/env bash
# start.sh SUITE: new network, mount, PID, UTS and IPC namespaces for the root built by
# build.sh, with a reaping init (nsinit.sh) and user-mode networking (slirp4netns: NAT to
# the host's network, DNS forwarder at 10.0.2.3, the host's loopback NOT reachable).
# Whatever the root starts (Postfix on 25, Dovecot on 143, mailwarden on 9190, ...) binds
# the namespace's own addresses: it cannot collide with the host or with another root.
# State (pids, logs) in $MAILWARDEN_FRESH_DIR/SUITE.state. Stop with stop.sh SUITE.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
fr_on_error
fr_suite "${1:-}"
[ "$(id -u)" = 0 ] || fr_die "start.sh must run as root"
[ -x "$ROOT/bin/sh" ] || fr_die "no root at $ROOT (build.sh $SUITE first)"
fr_init_pid >/dev/null && fr_die "$SUITE is already running (stop.sh $SUITE)"
fr_need slirp4netns slirp4netns
fr_need unshare util-linux
fr_need ip iproute2
mkdir -p "$STATE"
rm -f "$STATE/ready" "$STATE/init.pid" "$STATE/unshare.pid" "$STATE/slirp.pid"
setsid unshare --net --mount --pid --uts --ipc --fork -- "$HERE/nsinit.sh" "$ROOT" "$STATE/ready" \
  >"$STATE/init.log" 2>&1 </dev/null &
upid=$!
echo "$upid" >"$STATE/unshare.pid"
for _ in $(seq 100); do [ -e "$STATE/ready" ] && break; kill -0 "$upid" 2>/dev/null || break; sleep 0.1; done
[ -e "$STATE/ready" ] || fr_die "the namespace of $SUITE did not start: $(tr '\n' ' ' <"$STATE/init.log")"
cpid=
for _ in $(seq 50); do
  cpid=$(awk '{print $1}' "/proc/$upid/task/$upid/children" 2>/dev/null || true)
  [ -n "$cpid" ] && grep -q 'mailwarden-fresh-root-init' "/proc/$cpid/cmdline" 2>/dev/null && break
  sleep 0.1
done
[ -n "$cpid" ] || fr_die "no init process in the namespace of $SUITE"
echo "$cpid" >"$STATE/init.pid"
setsid slirp4netns --configure --mtu=65520 --disable-host-loopback "$cpid" tap0 \
  >"$STATE/slirp.log" 2>&1 </dev/null &
echo $! >"$STATE/slirp.pid"
has_route() { [[ $(nsenter -t "$cpid" --net ip -4 route 2>/dev/null) == *default* ]]; }
for _ in $(seq 100); do has_route && break; sleep 0.1; done
has_route || fr_die "slirp4netns gave $SUITE no network: $(tr '\n' ' ' <"$STATE/slirp.log")"
echo "started $SUITE: init pid $cpid, root $ROOT"
