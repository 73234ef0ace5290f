#!/usr/bin/env bash
# stop.sh SUITE [--remove]: end everything in the root's namespaces (killing its init ends
# every process there; the mounts go with the mount namespace) and the networking helper.
# --remove also deletes the root (and its state); without it the files stay for a look.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
fr_suite "${1:-}"
remove=0
[ "${2:-}" = --remove ] && remove=1
if cpid=$(fr_init_pid); then
  kill "$cpid" 2>/dev/null
fi
spid=$(cat "$STATE/slirp.pid" 2>/dev/null) &&
  grep -q slirp4netns "/proc/$spid/cmdline" 2>/dev/null && kill "$spid" 2>/dev/null
upid=$(cat "$STATE/unshare.pid" 2>/dev/null) || upid=
for _ in $(seq 100); do
  { [ -n "$upid" ] && grep -q unshare "/proc/$upid/cmdline" 2>/dev/null; } || break
  sleep 0.1
done
rm -f "$STATE/init.pid" "$STATE/slirp.pid" "$STATE/unshare.pid" "$STATE/ready"
if [ "$remove" = 1 ]; then
  # the mounts lived only in the ended namespace; --one-file-system guards anyway
  rm -rf --one-file-system "$ROOT" "$STATE"
  echo "stopped and removed $SUITE"
else
  echo "stopped $SUITE (root kept at $ROOT)"
fi
