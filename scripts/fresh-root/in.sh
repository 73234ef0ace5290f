#!/usr/bin/env bash
# in.sh SUITE ['COMMANDS']: run COMMANDS (bash) as root inside the root and its namespaces,
# in /root, with a clean environment (HOME, PATH, TERM, LANG; nothing of the caller's, no
# PIP_*); without COMMANDS, an interactive shell. The exit code is COMMANDS'.
#
# Trap: a command that starts daemons (the quickstart does) must send its output to a file
# (`in.sh bookworm 'make quickstart >/root/qs.log 2>&1'`, or redirect in.sh's own output
# to a file): the daemons inherit stdout/stderr, and a caller reading a pipe would wait
# for ever for its end.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
fr_suite "${1:-}"
shift
cpid=$(fr_init_pid) || fr_die "$SUITE is not running (start.sh $SUITE)"
cmd=(/bin/bash -l)
[ $# -gt 0 ] && cmd=(/bin/bash -c "cd /root && $*")
exec nsenter -t "$cpid" --net --mount --pid --uts --ipc -- chroot "$ROOT" \
  /usr/bin/env -i HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM="${TERM:-xterm}" LANG=C.UTF-8 \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "${cmd[@]}"
