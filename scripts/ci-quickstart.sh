#!/usr/bin/env bash
# CI: the README's quickstart on this (throwaway) machine, end to end, then proof that
# doctor notices a broken dependency. Runs after `make test`; it configures the system
# Postfix, Dovecot, clamd and spamd, so run it only on a machine you can throw away.
#
#   1. `make quickstart` (packages, venv, setup --apply, start everything, doctor) must
#      end with "N passed, 0 failed".
#   2. With clamd stopped, `mailwarden doctor` must fail and name clamd as the cause.
#   3. clamd restarted: doctor passes again.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/opt/mailwarden}
MW=$PREFIX/venv/bin/mailwarden
log=$(mktemp)

echo "== quickstart"
make quickstart PREFIX="$PREFIX" | tee "$log"
grep -Eq '^[0-9]+ passed, 0 failed' "$log" || { echo "ci-quickstart: doctor did not pass" >&2; exit 1; }

echo "== doctor with clamd stopped"
clamd_pid=$(pgrep -x clamd || true)
[ -n "$clamd_pid" ] || { echo "ci-quickstart: clamd is not running" >&2; exit 1; }
kill "$clamd_pid"
for _ in $(seq 1 100); do kill -0 "$clamd_pid" 2>/dev/null || break; sleep 0.1; done
if "$MW" doctor >"$log" 2>&1; then
  cat "$log"; echo "ci-quickstart: doctor passed although clamd is stopped" >&2; exit 1
fi
cat "$log"
grep -qi 'clamd' "$log" || { echo "ci-quickstart: doctor did not name clamd" >&2; exit 1; }

echo "== clamd back"
clamd
for _ in $(seq 1 300); do clamdscan --ping 1 >/dev/null 2>&1 && break; sleep 0.2; done
"$MW" doctor
echo "ci-quickstart: ok"
