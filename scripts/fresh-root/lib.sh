# Shared settings of the fresh-root scripts (sourced by build.sh, start.sh, in.sh, stop.sh).
#
#   MAILWARDEN_FRESH_DIR       where roots live: $DIR/SUITE (root), $DIR/SUITE.state
#                              (pids, logs of the namespace); default /var/tmp/mailwarden-fresh
#   MAILWARDEN_CI_CACHE        pristine debootstrap tarballs; default /var/cache/mailwarden-ci
#   MAILWARDEN_DEBIAN_MIRROR   Debian mirror; default the host's own, else deb.debian.org
#
# Errors: every script prints one line "fresh-root: ..." on stderr and exits non-zero.

FRESH_DIR=${MAILWARDEN_FRESH_DIR:-/var/tmp/mailwarden-fresh}
CACHE_DIR=${MAILWARDEN_CI_CACHE:-/var/cache/mailwarden-ci}

fr_die() { printf 'fresh-root: %s\n' "$*" >&2; exit 1; }
# set -e scripts: name the failing command instead of ending silently
fr_on_error() { trap 'printf "fresh-root: %s: line %s: %s failed\\n" "${0##*/}" "$LINENO" "$BASH_COMMAND" >&2' ERR; }

fr_suite() {  # fr_suite NAME: sets SUITE, ROOT, STATE
  SUITE=${1:-}
  [ -n "$SUITE" ] || fr_die "no suite given (bookworm, trixie)"
  case $SUITE in *[!a-z0-9-]*) fr_die "bad suite name: $SUITE" ;; esac
  ROOT=$FRESH_DIR/$SUITE
  STATE=$FRESH_DIR/$SUITE.state
}

fr_init_pid() {  # prints the host pid of the namespace's init if it is running
  local pid
  pid=$(cat "$STATE/init.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # the pid may have been reused: it must be our init (python3 ... reaper)
  grep -q 'mailwarden-fresh-root-init' "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

fr_need() {  # fr_need COMMAND PACKAGE: install a host package if its command is missing
  command -v "$1" >/dev/null && return 0
  echo "fresh-root: installing $2 on the host" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$2" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$2" >/dev/null; } ||
    fr_die "could not install $2 on the host (apt-get install $2)"
  command -v "$1" >/dev/null || fr_die "$2 installed but $1 not found"
}
