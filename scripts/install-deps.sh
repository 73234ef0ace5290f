#!/usr/bin/env bash
# Install everything the mailwarden integration tests need on a FRESH Debian 12
# (bookworm) machine, as root, without systemd.  Idempotent and quiet.
#
#   scripts/install-deps.sh                # apt packages, Exim, users, venv + pip
#   scripts/install-deps.sh --python-only  # only (re)create the venv and pip install
#
# Result:
#   * the mail servers from Debian (Postfix, Dovecot, MariaDB, clamd, spamd, ...)
#     installed but NOT started (policy-rc.d refuses service starts);
#   * Exim 4.96 heavy unpacked (not installed: it conflicts with postfix) under
#     $MAILWARDEN_EXIM_ROOT (default /opt/mailwarden-test/exim), with the shared
#     libraries its package Depends on installed (libpq5, libgnutls-dane0, ...), so
#     that `exim4 -bV` runs on a clean machine;
#   * users vmail (uid/gid 5000), Debian-exim and mlmmj (system users);
#   * Dovecot 2.4 (Debian 13 "trixie") in a debootstrap chroot under
#     $MAILWARDEN_DOVECOT24_ROOT, for contrib/dovecot/dovecot-2.4 (Debian 12 has 2.3);
#   * a venv at /opt/mailwarden-test/venv built from the SYSTEM python
#     (/usr/bin/python3): Postfix pipe transports run it as user vmail, and the
#     image's pyenv python lives under /root (mode 700), which vmail cannot reach.
#
# Environment:
#   MAILWARDEN_EXIM_ROOT        where Exim is unpacked (default $PREFIX/exim)
#   MAILWARDEN_DOVECOT24_ROOT   the Dovecot 2.4 chroot (default $PREFIX/trixie)
#   MAILWARDEN_DEBIAN_MIRROR    mirror for that chroot (default http://deb.debian.org/debian)
#   MAILWARDEN_KEEP_GPG_AGENT=1 do not kill the gpg-agent left by spamassassin's postinst
set -euo pipefail
umask 022

PREFIX=/opt/mailwarden-test
EXIM_ROOT=${MAILWARDEN_EXIM_ROOT:-$PREFIX/exim}
DOVECOT24_ROOT=${MAILWARDEN_DOVECOT24_ROOT:-$PREFIX/trixie}
DEBIAN_MIRROR=${MAILWARDEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
VENV=$PREFIX/venv
SYSTEM_PYTHON=/usr/bin/python3
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

APT_PACKAGES=(
  postfix postfix-mysql postfix-sqlite
  dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd dovecot-mysql dovecot-sqlite
  mariadb-server clamav-daemon clamdscan spamassassin spamd spamc libmilter-dev swaks sqlite3
  courier-authdaemon courier-authlib-mysql courier-authlib-sqlite postfwd python3-venv
  bc xxd build-essential python3-dev debootstrap openssl mlmmj
)

SUMMARY=()
WORK=
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
die() { echo "install-deps: $*" >&2; exit 1; }

# Run a command silently; show its output only if it fails.
quiet() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "install-deps: command failed (rc=$rc): $*" >&2
    tail -n 40 "$log" >&2
  fi
  rm -f "$log"
  return "$rc"
}

install_apt() {
  local t0
  t0=$(now)
  export DEBIAN_FRONTEND=noninteractive
  # Refuse service starts from postinst scripts (Docker images already have this).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
  fi
  # "No configuration": no /etc/postfix/main.cf, tests use their own config dirs.
  printf '%s\n' 'postfix postfix/main_mailer_type select No configuration' \
    'postfix postfix/mailname string localhost' | debconf-set-selections
  quiet apt-get update -qq
  quiet apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
  SUMMARY+=("apt=$(elapsed "$t0")")
}

# The shared-library packages (lib*) among the Depends of the given .deb files: the
# first of each set of alternatives, without version or architecture qualifiers.
deb_library_depends() {
  local deb
  for deb in "$@"; do
    dpkg-deb -f "$deb" Depends
  done | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/:.*//' -e 's/[[:space:]]//g' |
    grep '^lib' | sort -u
}

install_exim() {
  local t0 tmp deps missing
  t0=$(now)
  # LIBDEPS lists what the unpacked packages need at run time (written at unpack time);
  # an Exim unpacked before that file existed is unpacked again (about 2 s).
  if [ -x "$EXIM_ROOT/usr/sbin/exim4" ] && [ -s "$EXIM_ROOT/LIBDEPS" ]; then
    SUMMARY+=("exim=present")
  else
    # exim4-daemon-heavy Conflicts with postfix (mail-transport-agent): unpack, don't
    # install -- and then install its libraries ourselves, as apt would have.
    tmp=$WORK/exim
    mkdir -p "$tmp/debs" "$tmp/root"
    (cd "$tmp/debs" && quiet apt-get download -qq exim4-daemon-heavy exim4-base)
    for deb in "$tmp"/debs/*.deb; do
      dpkg -x "$deb" "$tmp/root"
    done
    [ -x "$tmp/root/usr/sbin/exim4" ] || die "exim4 binary not found in the downloaded packages"
    deb_library_depends "$tmp"/debs/*.deb >"$tmp/root/LIBDEPS"
    [ -s "$tmp/root/LIBDEPS" ] || die "no library dependencies found in the Exim packages"
    mkdir -p "$(dirname "$EXIM_ROOT")"
    rm -rf "$EXIM_ROOT"
    mv "$tmp/root" "$EXIM_ROOT"
    chmod 755 "$EXIM_ROOT"
    SUMMARY+=("exim=$(elapsed "$t0")")
  fi
  mapfile -t deps <"$EXIM_ROOT/LIBDEPS"
  export DEBIAN_FRONTEND=noninteractive
  quiet apt-get install -y -qq --no-install-recommends "${deps[@]}"
  missing=$(ldd "$EXIM_ROOT/usr/sbin/exim4" | awk '/not found/ { print $1 }' | tr '\n' ' ')
  [ -z "$missing" ] || die "$EXIM_ROOT/usr/sbin/exim4 still lacks shared libraries: $missing"
  quiet "$EXIM_ROOT/usr/sbin/exim4" -C /dev/null -bV ||
    die "$EXIM_ROOT/usr/sbin/exim4 -bV fails (see above)"
}

install_dovecot24() {
  # Dovecot 2.4 from Debian 13 in a chroot beside the system's 2.3 (its binaries need
  # trixie's libc, so unpacking them like Exim would not run). tests/integration/
  # test_dovecot24.py starts it there on 127.0.0.1 with contrib/dovecot/dovecot-2.4.
  local t0 tmp
  t0=$(now)
  if [ -x "$DOVECOT24_ROOT/usr/sbin/dovecot" ]; then
    SUMMARY+=("dovecot24=present")
    return
  fi
  tmp=$DOVECOT24_ROOT.partial
  rm -rf "$tmp"
  mkdir -p "$(dirname "$DOVECOT24_ROOT")"
  quiet debootstrap --variant=minbase \
    --include=dovecot-core,dovecot-imapd,dovecot-pop3d,dovecot-sqlite,dovecot-mysql \
    trixie "$tmp" "$DEBIAN_MIRROR"
  chroot "$tmp" /usr/sbin/dovecot --version | grep -q '^2\.4' || die "no Dovecot 2.4 in $tmp"
  # the mail user, as on the host (contrib files name its group)
  chroot "$tmp" groupadd -g 5000 vmail
  chroot "$tmp" useradd -u 5000 -g 5000 -d /nonexistent -M -s /usr/sbin/nologin vmail
  chmod 755 "$tmp"
  mv "$tmp" "$DOVECOT24_ROOT"
  SUMMARY+=("dovecot24=$(elapsed "$t0")")
}

create_users() {
  getent group vmail >/dev/null || groupadd -g 5000 vmail
  getent passwd vmail >/dev/null ||
    quiet useradd -r -u 5000 -g 5000 -d /nonexistent -M -s /usr/sbin/nologin vmail
  [ "$(id -u vmail)" = 5000 ] && [ "$(id -g vmail)" = 5000 ] ||
    die "user vmail exists but is not uid/gid 5000"
  # Exim's compiled-in user.
  getent passwd Debian-exim >/dev/null ||
    quiet useradd -r -U -d /var/spool/exim4 -M -s /usr/sbin/nologin Debian-exim
  # mlmmj's list directories and Postfix's mlmmj pipe (docs/lists.md).
  getent passwd mlmmj >/dev/null ||
    quiet useradd -r -U -d /var/spool/mlmmj -M -s /usr/sbin/nologin mlmmj
}

cleanup_spamassassin() {
  local proc pid
  # spamassassin's postinst leaves a gpg-agent for sa-update's keyring running
  # (found via /proc: minimal images have no procps/pgrep).
  if [ "${MAILWARDEN_KEEP_GPG_AGENT:-0}" != 1 ]; then
    for proc in /proc/[0-9]*; do
      [ "$(cat "$proc/comm" 2>/dev/null)" = gpg-agent ] || continue
      if tr '\0' ' ' <"$proc/cmdline" 2>/dev/null | grep -q 'sa-update-keys'; then
        pid=${proc#/proc/}
        kill "$pid" 2>/dev/null || true
      fi
    done
  fi
  # A failed sa-update leaves an empty updates dir that spamd then prefers over
  # the shipped rules ("config: no rules were found!").
  local d
  for d in /var/lib/spamassassin/4.*; do
    [ -d "$d" ] || continue
    if [ -z "$(find "$d" -type f -print -quit)" ]; then
      rm -rf "$d"
    fi
  done
}

install_python() {
  local t0
  t0=$(now)
  [ -x "$SYSTEM_PYTHON" ] || die "$SYSTEM_PYTHON not found (apt package python3-venv)"
  # Recreate the venv if it was not built from the system python.
  if [ -f "$VENV/pyvenv.cfg" ] && ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg"; then
    rm -rf "$VENV"
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    mkdir -p "$PREFIX"
    quiet "$SYSTEM_PYTHON" -m venv "$VENV"
  fi
  quiet "$VENV/bin/pip" install -q --disable-pip-version-check "$REPO[milter,test]"
  SUMMARY+=("venv+pip=$(elapsed "$t0")")
}

main() {
  local t0 python_only=0
  t0=$(now)
  case "${1:-}" in
    "") ;;
    --python-only) python_only=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d'
      exit 0
      ;;
    *) die "unknown argument: $1 (use --python-only)" ;;
  esac
  [ "$(id -u)" = 0 ] || die "must run as root"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT

  if [ "$python_only" = 0 ]; then
    install_apt
    create_users # before Exim: its -bV check needs the Debian-exim user
    install_exim
    install_dovecot24
    cleanup_spamassassin
  fi
  install_python
  local IFS=,
  echo "install-deps: ok in $(elapsed "$t0") [${SUMMARY[*]}] venv=$VENV exim=$EXIM_ROOT/usr/sbin/exim4"
}

main "$@"
