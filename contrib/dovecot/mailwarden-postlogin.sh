#!/bin/sh
# mailwarden: POP-before-SMTP and provisioning at the first login, for Dovecot's post-login
# scripting (docs/pop-before-smtp.md, docs/api.md).
#
# Dovecot runs this after every successful IMAP or POP3 login (93-mailwarden-postlogin.conf)
# with the client's address in $IP. It starts `mailwarden relay allow-login $IP` in the
# background, so that the address may relay through Postfix without SMTP AUTH for
# [relay] pop_before_smtp_minutes (mailwarden.toml; 0 = off: nothing is recorded), and
# then hands the session on to Dovecot (the `exec "$@"` at the end, which Dovecot needs).
#
# It never blocks or fails a login: the command runs in the background, with its standard
# descriptors on /dev/null and the client connection's descriptors closed, under a time
# limit; its errors go to syslog (mail.warning, tag mailwarden-postlogin).
#
# Install as /usr/local/lib/mailwarden/postlogin.sh, mode 0755, and set the two paths
# below. The service user (93-mailwarden-postlogin.conf) must be able to read the
# configuration file and write the database (SQLite: the database file and its directory).

MAILWARDEN=/usr/local/bin/mailwarden
MAILWARDEN_CONFIG=/etc/mailwarden/mailwarden.toml
TIME_LIMIT=10

if [ -n "$IP" ] && [ -x "$MAILWARDEN" ]; then
    (
        exec </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
        timeout "$TIME_LIMIT" "$MAILWARDEN" --config "$MAILWARDEN_CONFIG" \
            relay allow-login "$IP" 2>&1 >/dev/null \
            | logger -t mailwarden-postlogin -p mail.warning
    ) >/dev/null 2>&1 &
fi
# Provisioning at the first login (docs/api.md): `user first-login` records it and prints
# one line (mail.info) the first time; later logins print nothing. The folders are
# Dovecot's own (15-mailwarden-mailboxes.conf: auto = subscribe).
if [ -n "$USER" ] && [ -x "$MAILWARDEN" ]; then
    (
        exec </dev/null 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&-
        timeout "$TIME_LIMIT" "$MAILWARDEN" --config "$MAILWARDEN_CONFIG" \
            user first-login "$USER" --ip "${IP:--}" 2>&1 \
            | logger -t mailwarden-postlogin -p mail.info
    ) >/dev/null 2>&1 &
fi
exec "$@"
