#!/usr/bin/env bash
# CI checks after the README's `make quickstart`, run INSIDE a fresh root (scripts/
# ci-fresh-roots.sh runs it there through scripts/fresh-root/in.sh; on any other machine
# only if you can throw that machine away: --clamd stops and restarts the system clamd).
#
#   scripts/ci-quickstart.sh QUICKSTART_LOG [--clamd]
#
#   1. the last doctor line of QUICKSTART_LOG must be "N passed, 0 failed" with
#      N >= MIN_CHECKS (default 13);
#   2. Postfix's log (/var/log/mail.log, written by postlogd: the quickstart sets
#      maillog_file) must have no "status=bounced": the quickstart and doctor never
#      bounce mail;
#   3. --clamd: with clamd stopped, `mailwarden doctor` must fail and name clamd; with
#      clamd started again, doctor passes again.
#
# Prints "quickstart doctor: ..." and "bounced: N" (with the bounced lines, if any).
# Every check runs; exit 1 if any failed, naming it on stderr.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PREFIX=${PREFIX:-/opt/mailwarden}
MW=$PREFIX/venv/bin/mailwarden
MIN_CHECKS=${MIN_CHECKS:-13}
MAIL_LOG=/var/log/mail.log
log=${1:-}
clamd_check=0
[ "${2:-}" = --clamd ] && clamd_check=1
[ -n "$log" ] && [ -r "$log" ] || { echo "ci-quickstart: usage: $0 QUICKSTART_LOG [--clamd]" >&2; exit 2; }
failed=()

doctor_line() {  # the last "N passed, M failed" line of a file
  grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -n 1
}

# 1. the quickstart's doctor
line=$(doctor_line "$log")
echo "quickstart doctor (N >= $MIN_CHECKS, 0 failed wanted) -> ${line:-no doctor line}"
if [[ $line =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
  if [ "${BASH_REMATCH[2]}" != 0 ] || [ "${BASH_REMATCH[1]}" -lt "$MIN_CHECKS" ]; then
    failed+=("quickstart doctor: $line")
    grep -E '^FAIL ' "$log" | head -n 20
  fi
else
  failed+=("quickstart: no doctor line in $log")
fi

# 2. nothing bounced
if [ -r "$MAIL_LOG" ]; then
  bounced=$(grep -c 'status=bounced' "$MAIL_LOG")
  echo "bounced: $bounced"
  if [ "$bounced" != 0 ]; then
    grep 'status=bounced' "$MAIL_LOG" | head -n 5
    grep -E 'warning: do not list domain' "$MAIL_LOG" | sort -u | head -n 3
    failed+=("$bounced status=bounced in $MAIL_LOG")
  fi
else
  echo "bounced: unknown ($MAIL_LOG missing)"
  failed+=("no $MAIL_LOG: Postfix never logged")
fi

# 3. doctor notices a stopped clamd
clamd_pid() {  # minimal Debian has no pgrep: look through /proc
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = clamd ] && { echo "${p#/proc/}"; return 0; }
  done
  return 1
}
if [ "$clamd_check" = 1 ]; then
  out=$(mktemp)
  echo "== doctor with clamd stopped"
  if pid=$(clamd_pid); then
    kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if "$MW" doctor >"$out" 2>&1; then
      cat "$out"
      failed+=("doctor passed although clamd is stopped")
    else
      cat "$out"
      grep -qi clamd "$out" || failed+=("doctor failed with clamd stopped but did not name clamd")
    fi
    echo "== clamd started again"
    clamd
    for _ in $(seq 1 300); do clamdscan --ping 1 >/dev/null 2>&1 && break; sleep 0.2; done
    "$MW" doctor >"$out" 2>&1
    rc=$?
    cat "$out"
    [ "$rc" = 0 ] || failed+=("doctor failed after clamd was started again: $(doctor_line "$out")")
  else
    failed+=("clamd is not running after the quickstart")
  fi
  rm -f "$out"
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf 'ci-quickstart: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "ci-quickstart: ok"
