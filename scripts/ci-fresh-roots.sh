#!/usr/bin/env bash
# CI (.ci/run calls this), as root: the README's two commands on new users' machines.
#
# For Debian 12 (bookworm) and Debian 13 (trixie), each in a clean debootstrap root with
# network, mount, PID, UTS and IPC namespaces of its own (scripts/fresh-root/), so nothing
# collides with the host or with the other root:
#   1. build the root (pristine tarball cached per suite, a new root extracted each run),
#      copy the checkout to /root/mailwarden, start the namespaces;
#   2. what the README tells a user to install first: `apt-get install -y git make`
#      (after `apt-get update`, which a fresh machine needs);
#   3. the README's first command, `make quickstart`; its doctor must end with
#      "N passed, 0 failed" (N >= 13) and /var/log/mail.log must have no status=bounced
#      (scripts/ci-quickstart.sh, inside the root); in bookworm also: doctor fails and
#      names clamd while clamd is stopped, and passes again once it runs;
#   4. bookworm only, with the quickstart's services still running: the README's second
#      command, `MAILWARDEN_NO_SKIP=1 make test` (ruff, mypy, the whole suite; a skip
#      counts as a failure); its pytest summary must show no failure, error or skip.
# trixie's steps 1-3 run beside bookworm's (2 CPUs: the quickstarts mostly wait for the
# network); bookworm's `make test` runs alone, as its tests are timing-sensitive.
# Every command run in a root writes to a file in the root (daemons it starts would hold
# a pipe open), followed here line by line with a [suite] prefix; a copy of every log ends
# in $MAILWARDEN_FRESH_DIR/logs (default /var/tmp/mailwarden-fresh/logs).
#
#   scripts/ci-fresh-roots.sh [--worktree] [--suite S]... [--keep] [--serial] [--no-test] [--no-cache]
#
#   --worktree   copy the working tree (tracked and untracked files, not ignored ones)
#                instead of the committed tree (`git archive HEAD`, what CI tests)
#   --suite S    only this suite (bookworm or trixie; repeatable)
#   --keep       leave the roots and their namespaces running at the end (enter one with
#                scripts/fresh-root/in.sh SUITE; end it with scripts/fresh-root/stop.sh
#                SUITE --remove); without it they are stopped and deleted
#   --serial     trixie after bookworm's quickstart instead of beside it
#   --no-test    skip bookworm's `make test`
#   --no-cache   debootstrap anew instead of using the cached tarballs
#
# Exit 0 only if every step passed in every root. Elapsed time is printed per phase.
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FR=$REPO/scripts/fresh-root
# shellcheck source=fresh-root/lib.sh
. "$FR/lib.sh"

worktree=0 keep=0 serial=0 run_test=1 build_opts=()
suites=()
while [ $# -gt 0 ]; do
  case $1 in
    --worktree) worktree=1 ;;
    --suite) suites+=("${2:?--suite needs bookworm or trixie}"); shift ;;
    --keep) keep=1 ;;
    --serial) serial=1 ;;
    --no-test) run_test=0 ;;
    --no-cache) build_opts+=(--no-cache) ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "ci-fresh-roots: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)
for s in "${suites[@]}"; do
  case $s in bookworm | trixie) ;; *) echo "ci-fresh-roots: unsupported suite $s" >&2; exit 2 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "ci-fresh-roots: run as root" >&2; exit 1; }
git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1 || { echo "ci-fresh-roots: $REPO is not a git checkout" >&2; exit 1; }

LIMIT_QUICKSTART=${LIMIT_QUICKSTART:-1200}   # seconds; a hung step ends its root
LIMIT_TEST=${LIMIT_TEST:-2400}
LOGS=$FRESH_DIR/logs
RES=$LOGS/results
rm -rf "$LOGS" && mkdir -p "$RES"
T0=$(date +%s)
BG_PIDS=()

now() { date +%s; }
out() { local s=$1; shift; printf '[%s] %s\n' "$s" "$*"; }
prefixed() {  # prefixed SUITE CMD...: CMD's output with a [SUITE] prefix, CMD's exit code
  local s=$1; shift
  "$@" 2>&1 | sed -u "s/^/[$s] /"
  return "${PIPESTATUS[0]}"
}
record() {  # record SUITE PHASE SECONDS STATUS [DETAIL]
  printf '%-9s %-13s %5ss  %s\n' "$1" "$2" "$3" "$4${5:+  ($5)}" >>"$RES/$1.times"
  out "$1" "== $2: $4 in $3s${5:+ ($5)}"
  [ "$4" = ok ] || echo "$1 $2: $4${5:+ ($5)}" >>"$RES/$1.failed"
}

run_in() {  # run_in SUITE NAME LIMIT COMMAND: COMMAND in the root, output to /root/NAME.log, followed here
  local s=$1 name=$2 limit=$3 cmd=$4 log pid start rc
  log=$FRESH_DIR/$s/root/$name.log
  : >"$log"
  "$FR/in.sh" "$s" "$cmd" </dev/null >"$log" 2>&1 &
  pid=$!
  tail -n +1 -F --pid="$pid" "$log" 2>/dev/null | sed -u "s/^/[$s] /" &
  local tail_pid=$!
  start=$(now)
  while kill -0 "$pid" 2>/dev/null; do
    if [ $(($(now) - start)) -ge "$limit" ]; then
      out "$s" "$name: no end after ${limit}s: stopping the root"
      "$FR/stop.sh" "$s" >/dev/null 2>&1
      break
    fi
    sleep 1
  done
  wait "$pid"
  rc=$?
  wait "$tail_pid" 2>/dev/null
  cp "$log" "$LOGS/$s-$name.log" 2>/dev/null
  return "$rc"
}

copy_checkout() {  # copy_checkout DEST
  local dest=$1
  rm -rf "$dest" && mkdir -p "$dest"
  if [ "$worktree" = 1 ]; then
    (cd "$REPO" && git ls-files -z -co --exclude-standard |
      while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
      tar --null -T - -cf -) | tar -xf - -C "$dest"
  else
    git -C "$REPO" archive --format=tar HEAD | tar -xf - -C "$dest"
  fi
}

# steps 1-3 in one root; writes $RES/SUITE.failed on any failure, $RES/SUITE.ready if the
# root runs (so bookworm's make test may follow)
quickstart_root() {
  local s=$1 t rc what
  t=$(now)
  prefixed "$s" "$FR/build.sh" "${build_opts[@]}" "$s" || { record "$s" build "$(($(now) - t))" FAILED; return 1; }
  record "$s" build "$(($(now) - t))" ok

  t=$(now)
  what="git archive HEAD ($(git -C "$REPO" rev-parse --short HEAD))"
  [ "$worktree" = 1 ] && what="working tree (HEAD $(git -C "$REPO" rev-parse --short HEAD) + uncommitted changes)"
  copy_checkout "$FRESH_DIR/$s/root/mailwarden" || { record "$s" copy "$(($(now) - t))" FAILED "$what"; return 1; }
  prefixed "$s" "$FR/start.sh" "$s" || { record "$s" start "$(($(now) - t))" FAILED; return 1; }
  record "$s" copy+start "$(($(now) - t))" ok "$what"

  t=$(now)
  run_in "$s" git-make 600 'apt-get update -q && apt-get install -y git make'
  rc=$?
  [ "$rc" = 0 ] || { record "$s" git-make "$(($(now) - t))" FAILED "rc $rc: $(tail -n 1 "$LOGS/$s-git-make.log")"; return 1; }
  record "$s" git-make "$(($(now) - t))" ok "apt-get install -y git make"
  touch "$RES/$s.ready"

  t=$(now)
  run_in "$s" quickstart "$LIMIT_QUICKSTART" 'cd /root/mailwarden && make quickstart'
  rc=$?
  if [ "$rc" = 0 ]; then record "$s" quickstart "$(($(now) - t))" ok "make quickstart"
  else record "$s" quickstart "$(($(now) - t))" FAILED "make quickstart: rc $rc"; fi

  t=$(now)
  local flags=
  [ "$s" = bookworm ] && flags=--clamd
  run_in "$s" checks 300 "cd /root/mailwarden && scripts/ci-quickstart.sh /root/quickstart.log $flags"
  rc=$?
  grep -E '^quickstart doctor|^bounced:' "$LOGS/$s-checks.log" | sed "s/^/$s: /" >"$RES/$s.lines"
  if [ "$rc" = 0 ]; then record "$s" checks "$(($(now) - t))" ok "doctor, bounced${flags:+, clamd}"
  else record "$s" checks "$(($(now) - t))" FAILED "$(grep 'FAILED:' "$LOGS/$s-checks.log" | sed 's/.*FAILED: //' | paste -sd ';' -)"; fi
  return 0
}

pytest_summary() {  # pytest's last summary line in a log ("1455 passed, 2 warnings in 342.10s (0:05:42)")
  grep -E '^=*[[:space:]]*[0-9]+ (passed|failed|error|errors|skipped|deselected)\b.* in [0-9.]+s' "$1" |
    tail -n 1 | sed -E 's/^=+ //; s/ =+$//'
}

make_test_root() {
  local s=bookworm t rc summary
  t=$(now)
  run_in "$s" make-test "$LIMIT_TEST" 'cd /root/mailwarden && MAILWARDEN_NO_SKIP=1 make test'
  rc=$?
  summary=$(pytest_summary "$LOGS/$s-make-test.log")
  [ -z "$summary" ] || echo "$summary" >"$RES/pytest.line"
  if [ "$rc" = 0 ] && [ -n "$summary" ] && ! [[ $summary =~ (failed|error|skipped) ]]; then
    record "$s" make-test "$(($(now) - t))" ok "MAILWARDEN_NO_SKIP=1 make test"
    return
  fi
  local why="rc $rc"
  [ -n "$summary" ] || why="$why, no pytest summary: $(grep -E '^make: \*\*\*|install-deps: ' "$LOGS/$s-make-test.log" | tail -n 1)"
  grep -E '^(FAILED|ERROR) ' "$LOGS/$s-make-test.log" | sed "s/^/[$s] /"
  record "$s" make-test "$(($(now) - t))" FAILED "$why"
  # lint or mypy stopped make test before pytest: run the suite anyway, so that one CI
  # run shows every failure (the run has failed already)
  if [ -z "$summary" ] && grep -q '^install-deps: ok' "$LOGS/$s-make-test.log" &&
    grep -qE '^make: \*\*\* .*(lint|typecheck)\]' "$LOGS/$s-make-test.log"; then
    t=$(now)
    run_in "$s" pytest "$LIMIT_TEST" 'cd /root/mailwarden && MAILWARDEN_NO_SKIP=1 make -o lint -o typecheck check'
    rc=$?
    summary=$(pytest_summary "$LOGS/$s-pytest.log")
    [ -z "$summary" ] || echo "$summary" >"$RES/pytest.line"
    grep -E '^(FAILED|ERROR) ' "$LOGS/$s-pytest.log" | sed "s/^/[$s] /"
    if [ "$rc" = 0 ] && [ -n "$summary" ] && ! [[ $summary =~ (failed|error|skipped) ]]; then
      record "$s" pytest "$(($(now) - t))" ok "make test's pytest alone (after the lint/type failure)"
    else
      record "$s" pytest "$(($(now) - t))" FAILED "make test's pytest alone: rc $rc${summary:+: $summary}"
    fi
  fi
}

cleanup() {
  local s p
  for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for s in "${suites[@]}"; do
    if [ "$keep" = 1 ]; then
      fr_suite "$s"
      fr_init_pid >/dev/null && echo "kept $s running: scripts/fresh-root/in.sh $s   (end: scripts/fresh-root/stop.sh $s --remove)"
    else
      "$FR/stop.sh" "$s" --remove >/dev/null 2>&1
    fi
  done
}
trap cleanup EXIT
trap 'echo "ci-fresh-roots: interrupted" >&2; exit 130' INT TERM

echo "ci-fresh-roots: suites ${suites[*]}; roots in $FRESH_DIR; logs in $LOGS; $(nproc) CPUs"
has() { local x; for x in "${suites[@]}"; do [ "$x" = "$1" ] && return 0; done; return 1; }

tA=$(now)
if has bookworm && has trixie && [ "$serial" = 0 ]; then
  quickstart_root trixie &
  BG_PIDS+=($!)
  quickstart_root bookworm
  wait "${BG_PIDS[@]}"
else
  for s in "${suites[@]}"; do quickstart_root "$s"; done
fi
echo "ci-fresh-roots: quickstarts done in $(($(now) - tA))s"
if has trixie && has bookworm && [ "$keep" = 0 ]; then
  "$FR/stop.sh" trixie >/dev/null 2>&1   # nothing beside bookworm's make test (deleted at the end)
fi
if has bookworm && [ "$run_test" = 1 ]; then
  if [ -e "$RES/bookworm.ready" ]; then
    make_test_root
  else
    echo "bookworm make-test: not run (the root did not come up)" >>"$RES/bookworm.failed"
  fi
fi

echo
echo "== ci-fresh-roots: summary (total $(($(now) - T0))s)"
cat "$RES"/*.times 2>/dev/null
cat "$RES"/*.lines 2>/dev/null
status=0
if ls "$RES"/*.failed >/dev/null 2>&1; then
  status=1
  echo "FAILED steps:"
  cat "$RES"/*.failed | sed 's/^/  /'
else
  echo "ci-fresh-roots: every step passed"
fi
# pytest's summary last: CI reads the last summary line of the log
if [ -s "$RES/pytest.line" ]; then
  echo "bookworm, MAILWARDEN_NO_SKIP=1 make test, pytest:"
  cat "$RES/pytest.line"
fi
exit "$status"
