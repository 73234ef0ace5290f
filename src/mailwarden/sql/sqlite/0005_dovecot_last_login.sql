-- mailwarden schema 0005 (SQLite): logins recorded by Dovecot's last_login plugin.
--
-- Dovecot (contrib/dovecot/92-mailwarden-last-login.conf, or the last_login part of
-- contrib/dovecot/dovecot-2.4/mailwarden.conf) writes one row per (login, protocol)
-- through dict-sql when a user logs in over IMAP or POP3: the key
-- shared/last-login/<protocol>/<login>, the value the UNIX time in seconds. The triggers
-- copy every write into mailboxes.last_login of the mailbox with address = username,
-- which 'mailwarden user show' prints. A name that is no mailbox is kept here and copied
-- nowhere.
--
-- The dict writes with INSERT ... ON CONFLICT (service, username) DO UPDATE, which fires
-- the insert trigger for a first login and the update trigger afterwards; the conflict
-- target is the primary key. The latest write wins: a clock that went back is followed
-- rather than ignored.
--
-- Layout: mailwarden splits migration files at a ';' that ends a line, so the statement
-- inside a trigger body ends in '; ' followed by more text on the same line.

CREATE TABLE dovecot_last_login (
  username TEXT COLLATE NOCASE NOT NULL,
  service TEXT COLLATE NOCASE NOT NULL,
  last_login INTEGER,
  PRIMARY KEY (username, service)
);

CREATE TRIGGER dovecot_last_login_after_insert AFTER INSERT ON dovecot_last_login
WHEN NEW.last_login IS NOT NULL
BEGIN
  UPDATE mailboxes SET last_login = NEW.last_login WHERE address = NEW.username
  ; END;

CREATE TRIGGER dovecot_last_login_after_update AFTER UPDATE ON dovecot_last_login
WHEN NEW.last_login IS NOT NULL
BEGIN
  UPDATE mailboxes SET last_login = NEW.last_login WHERE address = NEW.username
  ; END;
