#!/usr/bin/env bash
# mailwarden quickstart: a fresh Debian 12 (bookworm) or 13 (trixie) machine, as root,
# to a working mail system
# on the embedded SQLite default, ending with `mailwarden doctor` ("N passed, 0 failed").
#
#   scripts/quickstart.sh                   # domain example.test
#   DOMAIN=mail.example.net scripts/quickstart.sh
#
# Steps: Debian packages (Postfix, Dovecot, ClamAV, SpamAssassin; service starts from
# postinst scripts refused through policy-rc.d), the vmail user (uid/gid 5000), a venv
# at $PREFIX/venv built from /usr/bin/python3 (NOT a Python under /root: the mail user
# must be able to run it), `mailwarden setup --non-interactive --apply`, clamd (given a
# minimal local EICAR signature when it has no database, e.g. offline), spamd, Dovecot,
# Postfix and `mailwarden serve` started directly (no systemd needed), then doctor.
#
# Environment: DOMAIN (example.test), PREFIX (/opt/mailwarden), POSTMASTER
# (postmaster@$DOMAIN), MAILNAME (the machine's own mail name for Debian's postfix
# package: its FQDN, or mx.$DOMAIN when it has none; never $DOMAIN itself, which Debian
# would put into mydestination, where local(8) bounces the hosted domain's mail).
# Re-running is safe, also after an interrupted run: dpkg is finished first, setup
# changes nothing the second time, running servers are reloaded instead of started twice.
set -euo pipefail
umask 022

DOMAIN=${DOMAIN:-example.test}
POSTMASTER=${POSTMASTER:-postmaster@$DOMAIN}
PREFIX=${PREFIX:-/opt/mailwarden}
VENV=$PREFIX/venv
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MW=$VENV/bin/mailwarden
# lmtpd and the milter on unix sockets below Postfix's queue directory, which Debian's
# chrooted lmtp(8)/smtpd(8) can reach (setup names them relative to it). Setup makes each
# directory <daemon user>:postfix 0750: only Postfix may connect. A TCP port would let any
# local process hand lmtpd mail that skipped policyd and the scanners.
LMTP=unix:/var/spool/postfix/mailwarden-lmtpd/lmtp.sock
MILTER=unix:/var/spool/postfix/mailwarden-milter/milter.sock
CLAMDB=/var/lib/clamav
LOCAL_SIG=$CLAMDB/mailwarden-local.ndb

APT_PACKAGES=(
  postfix postfix-sqlite
  dovecot-core dovecot-imapd dovecot-pop3d dovecot-sqlite
  clamav-daemon clamdscan spamassassin spamd spamc openssl
  python3-venv python3-dev build-essential libmilter-dev
)

POLICY_MARK='# mailwarden quickstart: refuse service starts during apt-get'

say() { printf 'quickstart: %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2 i
  shift 2
  for ((i = 0; i < limit * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${limit}s"
}

check_release() {
  # One line for a machine this quickstart was not made for, before anything changes.
  local id="" version="" pretty=""
  if [ -r /etc/os-release ]; then
    id=$(. /etc/os-release && echo "${ID:-}")
    version=$(. /etc/os-release && echo "${VERSION_ID:-}")
    pretty=$(. /etc/os-release && echo "${PRETTY_NAME:-}")
  fi
  case "$id:$version" in
    debian:12 | debian:13) ;;
    *) die "Debian 12 (bookworm) and 13 (trixie) are supported; this is ${pretty:-an unknown system}" ;;
  esac
}

mail_name() {
  # The machine's own mail name: its FQDN when it has one, else mx.$DOMAIN.
  local name=${MAILNAME:-}
  if [ -z "$name" ]; then
    name=$(hostname --fqdn 2>/dev/null || hostname)
    case "$name" in *.*) ;; *) name=mx.$DOMAIN ;; esac
  fi
  if [ "${name,,}" = "${DOMAIN,,}" ]; then
    die "this machine's name is $DOMAIN, the domain to host: name it e.g. mx.$DOMAIN (hostname, /etc/hostname, /etc/hosts) or set MAILNAME=mx.$DOMAIN"
  fi
  printf '%s\n' "$name"
}

check_main_cf() {
  # A main.cf Postfix cannot read: one line, before anything changes.
  [ -s /etc/postfix/main.cf ] && command -v postconf >/dev/null || return 0
  local why
  if ! why=$(postconf -n 2>&1 >/dev/null); then
    why=$(printf '%s\n' "$why" | grep 'fatal:' | tail -n 1)
    die "/etc/postfix/main.cf is broken, fix it first: ${why#*fatal: }"
  fi
}

install_packages() {
  export DEBIAN_FRONTEND=noninteractive
  if [ -e /usr/sbin/policy-rc.d ] && grep -qF "$POLICY_MARK" /usr/sbin/policy-rc.d; then
    rm -f /usr/sbin/policy-rc.d   # left by an interrupted run
  fi
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Refuse service starts from postinst scripts; this script starts what it needs.
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  printf '%s\n' 'postfix postfix/main_mailer_type select Internet Site' \
    "postfix postfix/mailname string $MAILNAME" | debconf-set-selections
  # An interrupted earlier run may have left packages unpacked but not configured.
  dpkg --configure -a >/dev/null 2>&1 || true
  say "installing Debian packages (${#APT_PACKAGES[@]}; mail name $MAILNAME)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  getent group vmail >/dev/null || groupadd -g 5000 vmail
  getent passwd vmail >/dev/null ||
    useradd -r -u 5000 -g 5000 -d /nonexistent -M -s /usr/sbin/nologin vmail
}

install_mailwarden() {
  [ -x /usr/bin/python3 ] || die "/usr/bin/python3 missing (apt-get install python3)"
  if [ -f "$VENV/pyvenv.cfg" ] && ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg"; then
    rm -rf "$VENV"   # not built from the system Python
  fi
  [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
  say "installing mailwarden into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${REPO}[milter]"
  ln -sf "$VENV/bin/mailwarden" /usr/local/bin/mailwarden
  ln -sf "$VENV/bin/mailwarden-lda" /usr/local/bin/mailwarden-lda
  rm -rf "$PREFIX/contrib" && cp -r "$REPO/contrib" "$PREFIX/contrib"
  mkdir -p "$PREFIX/docs" && cp -r "$REPO/docs/." "$PREFIX/docs/" 2>/dev/null || true
}

base_postfix_config() {
  # "No configuration" installs (and CI images) have no main.cf: give Postfix a minimal
  # one; setup then adds only mailwarden's own settings.
  if [ ! -s /etc/postfix/main.cf ] || grep -q 'Written by mailwarden tests' /etc/postfix/main.cf; then
    cat >/etc/postfix/main.cf <<CF
compatibility_level = 3.6
myhostname = mx.$DOMAIN
mydestination = localhost
inet_interfaces = all
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
CF
  fi
  # No syslog on minimal machines: postlogd writes the mail log itself.
  postconf -e 'maillog_file = /var/log/mail.log'
  postfix_certificate
}

self_signed() {  # self_signed SERVER CERT KEY: a 10-year certificate for mx.$DOMAIN
  say "$1 has no TLS certificate: creating a self-signed one for mx.$DOMAIN"
  install -d -m 0700 "$(dirname "$2")" "$(dirname "$3")"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mx.$DOMAIN" \
    -keyout "$3" -out "$2" 2>/dev/null
  chmod 0600 "$3"
}

postfix_certificate() {
  # SMTP AUTH is offered only after STARTTLS (contrib/postfix/main.cf.sasl): without a
  # certificate mail clients could not log in. A self-signed one until a real one is set.
  # Debian's main.cf names the snakeoil certificate, which only the ssl-cert package
  # (a Recommends) creates: a named file that is missing counts as none.
  local cert key
  cert=$(postconf -hx smtpd_tls_cert_file)
  key=$(postconf -hx smtpd_tls_key_file)
  [ -n "$cert" ] && [ -s "$cert" ] && { [ -z "$key" ] || [ -s "$key" ]; } && return 0
  local dir=/etc/postfix/mailwarden-tls
  self_signed Postfix "$dir/cert.pem" "$dir/key.pem"
  postconf -e "smtpd_tls_cert_file = $dir/cert.pem" "smtpd_tls_key_file = $dir/key.pem" \
    'smtpd_tls_security_level = may'
}

run_setup() {
  say "mailwarden setup for $DOMAIN"
  "$MW" setup --non-interactive --apply --domain "$DOMAIN" --postmaster "$POSTMASTER" \
    --with-clamav --with-spamassassin --lmtp-listen "$LMTP" --milter-listen "$MILTER" \
    --contrib-dir "$PREFIX/contrib"
}

start_clamd() {
  if ! ls "$CLAMDB"/*.c[vl]d "$CLAMDB"/*.ndb >/dev/null 2>&1; then
    # Offline machine, no freshclam download: one local signature (EICAR) lets clamd
    # start; doctor reports it. A real database (freshclam) may be added at any time.
    local eicar='X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*'
    printf 'Test.EICAR-Local:0:*:%s\n' "$(printf '%s' "$eicar" | od -An -tx1 | tr -d ' \n')" >"$LOCAL_SIG"
    chown clamav:clamav "$LOCAL_SIG" 2>/dev/null || true
    say "clamd has no signature database: installed the local EICAR test signature $LOCAL_SIG"
  fi
  mkdir -p /run/clamav && chown clamav:clamav /run/clamav
  if ! clamdscan --ping 1 >/dev/null 2>&1; then
    clamd
  fi
  wait_for 60 clamd clamdscan --ping 1
}

start_spamd() {
  # A failed sa-update leaves an empty updates dir that spamd would prefer.
  local d
  for d in /var/lib/spamassassin/4.*; do
    [ -d "$d" ] && [ -z "$(find "$d" -type f -print -quit)" ] && rm -rf "$d"
  done
  if ! spamc -K >/dev/null 2>&1; then
    spamd -d --listen=127.0.0.1:783 --allowed-ips=127.0.0.1 -u debian-spamd -g debian-spamd \
      --pidfile=/run/spamd.pid --helper-home-dir=/var/lib/spamassassin -x \
      --cf='use_bayes 0' --max-children=3
  fi
  wait_for 60 spamd spamc -K
}

dovecot_certificate() {
  # Debian's 10-ssl.conf names /etc/dovecot/private/dovecot.{pem,key}; without the
  # ssl-cert package (a Recommends) nobody creates them and Dovecot refuses to start.
  # A self-signed certificate keeps IMAP/POP3 STARTTLS working until a real one is set.
  local dir=/etc/dovecot/private
  [ -s "$dir/dovecot.pem" ] && [ -s "$dir/dovecot.key" ] && return 0
  self_signed Dovecot "$dir/dovecot.pem" "$dir/dovecot.key"
}

start_mail_servers() {
  dovecot_certificate
  # Debian 13's package leaves Postfix's queue directories to the first start; Dovecot's
  # SASL listener lives in one of them (private/auth): create them first.
  postfix check
  if [ -f /run/dovecot/master.pid ] && kill -0 "$(cat /run/dovecot/master.pid)" 2>/dev/null; then
    doveadm reload
  else
    dovecot
  fi
  if postfix status >/dev/null 2>&1; then postfix reload; else postfix start; fi
  wait_for 30 "Postfix smtpd" bash -c 'exec 3<>/dev/tcp/127.0.0.1/25'
  wait_for 30 "Dovecot IMAP" bash -c 'exec 3<>/dev/tcp/127.0.0.1/143'
}

start_serve() {
  local pid_file=/run/mailwarden/serve.pid
  if [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    say "mailwarden serve already running (pid $(cat "$pid_file")): restarting it"
    kill "$(cat "$pid_file")"
    wait_for 30 "serve to stop" bash -c "! kill -0 $(cat "$pid_file") 2>/dev/null"
  fi
  "$MW" serve --log-file /var/log/mailwarden/serve.log --pid-file "$pid_file"
  wait_for 60 "mailwarden serve" bash -c \
    "$VENV/bin/python -c \"import urllib.request as u,sys; t=u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9190/metrics',timeout=3).read().decode(); sys.exit(t.count('mailwarden_serve_up{')<4 or ' 0.0' in ''.join(l for l in t.splitlines() if l.startswith('mailwarden_serve_up{')))\""
}

main() {
  [ "$(id -u)" = 0 ] || die "run as root"
  check_release
  MAILNAME=$(mail_name)
  check_main_cf
  install_packages
  install_mailwarden
  base_postfix_config
  run_setup
  start_clamd
  start_spamd
  start_mail_servers
  start_serve
  say "running mailwarden doctor"
  "$MW" doctor
}

main "$@"
