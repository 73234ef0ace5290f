#!/usr/bin/env bash
# build.sh SUITE: a fresh minimal Debian root (bookworm, trixie) at $MAILWARDEN_FRESH_DIR/SUITE,
# as a new user's machine would be: `debootstrap --variant=minbase` (no git, no make, no
# CA bundle, no mail server), plus what every real machine has network-wise:
#
#   * /etc/hostname (debian) and /etc/hosts naming it;
#   * /etc/resolv.conf -> 10.0.2.3, the DNS forwarder of slirp4netns (start.sh), which
#     resolves through the host's own resolver;
#   * /etc/apt/sources.list: SUITE, SUITE-updates and SUITE-security, as the Debian
#     installer writes them (debootstrap writes only SUITE);
#   * the host's extra trusted CAs (/usr/local/share/ca-certificates/*.crt) in the same
#     place: a real machine trusts whatever its network needs; ca-certificates' postinst
#     (pulled in by `apt-get install git`) adds them to the bundle pip uses.
#
# Nothing else of the host is copied: no pip configuration (pip.conf, PIP_* variables,
# local wheel directories or indexes), no apt proxy or apt.conf.d settings.
#
# Cache: the pristine debootstrap result is kept as a tarball per suite, mirror and
# architecture under $MAILWARDEN_CI_CACHE (default /var/cache/mailwarden-ci) and reused for
# up to MAILWARDEN_CI_CACHE_DAYS days (default 7); each build extracts a NEW root from it,
# so nothing a run did survives into the next. --no-cache rebuilds the tarball.
#
# A running namespace of the same suite is stopped first; the old root is deleted.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
fr_on_error

no_cache=0
args=()
for a in "$@"; do
  case $a in
    --no-cache) no_cache=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    -*) fr_die "build.sh: unknown option $a" ;;
    *) args+=("$a") ;;
  esac
done
fr_suite "${args[0]:-}"
[ "$(id -u)" = 0 ] || fr_die "build.sh must run as root"
fr_need debootstrap debootstrap
[ -e "/usr/share/debootstrap/scripts/$SUITE" ] ||
  fr_die "this host's debootstrap does not know $SUITE (upgrade debootstrap)"

host_mirror() {
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
    grep -v '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ' | sed 's,/$,,' || true
}
MIRROR=${MAILWARDEN_DEBIAN_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${MIRROR%/debian}/debian-security
ARCH=$(dpkg --print-architecture)
DAYS=${MAILWARDEN_CI_CACHE_DAYS:-7}
if command -v zstd >/dev/null; then COMP=(--zstd); EXT=tar.zst; else COMP=(--gzip); EXT=tar.gz; fi
TARBALL=$CACHE_DIR/$SUITE-$ARCH-minbase.$EXT
KEY="suite=$SUITE arch=$ARCH variant=minbase mirror=$MIRROR debootstrap=$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null)"

mkdir -p "$FRESH_DIR" "$CACHE_DIR"
exec 9>"$CACHE_DIR/$SUITE.lock"
flock 9   # one build of a suite at a time (two CI runs, or CI and a developer)

# the previous root of this suite: end its namespace, delete it
"$HERE/stop.sh" "$SUITE" >/dev/null 2>&1 || true
rm -rf --one-file-system "$ROOT"

cached=0
if [ "$no_cache" = 0 ] && [ -s "$TARBALL" ] && [ "$(cat "$TARBALL.key" 2>/dev/null)" = "$KEY" ] &&
  [ -n "$(find "$TARBALL" -mtime "-$DAYS" 2>/dev/null)" ]; then
  cached=1
fi
if [ "$cached" = 0 ]; then
  tmp=$FRESH_DIR/$SUITE.debootstrap
  rm -rf --one-file-system "$tmp"
  log=$FRESH_DIR/$SUITE-debootstrap.log
  debootstrap --variant=minbase --arch="$ARCH" "$SUITE" "$tmp" "$MIRROR" >"$log" 2>&1 ||
    { tail -n 20 "$log" >&2; fr_die "debootstrap $SUITE from $MIRROR failed (log: $log)"; }
  tar -C "$tmp" --numeric-owner --xattrs --xattrs-include='*' "${COMP[@]}" -cpf "$TARBALL.part" .
  printf '%s\n' "$KEY" >"$TARBALL.key.part"
  mv "$TARBALL.part" "$TARBALL" && mv "$TARBALL.key.part" "$TARBALL.key"
  mv "$tmp" "$ROOT"
  echo "built $ROOT (debootstrap $SUITE from $MIRROR; cached as $TARBALL)"
else
  mkdir -p "$ROOT"
  tar -C "$ROOT" --numeric-owner --xattrs --xattrs-include='*' "${COMP[@]}" -xpf "$TARBALL"
  echo "built $ROOT (from $TARBALL, $(( ($(date +%s) - $(stat -c %Y "$TARBALL")) / 3600 ))h old)"
fi

# what a real machine has network-wise
chmod 755 "$ROOT"
echo debian >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
rm -f "$ROOT/etc/resolv.conf"
echo 'nameserver 10.0.2.3' >"$ROOT/etc/resolv.conf"
rm -f "$ROOT/etc/apt/sources.list.d/debian.sources"
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
mkdir -p "$ROOT/usr/local/share/ca-certificates"
for crt in /usr/local/share/ca-certificates/*.crt; do
  [ -f "$crt" ] && cp "$crt" "$ROOT/usr/local/share/ca-certificates/"
done
mkdir -p "$STATE"
echo "$SUITE" >"$STATE/suite"
