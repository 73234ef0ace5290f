-- mailwarden schema 0005 (MariaDB/MySQL): logins recorded by Dovecot's last_login plugin.
--
-- Dovecot (contrib/dovecot/92-mailwarden-last-login.conf, or the last_login part of
-- contrib/dovecot/dovecot-2.4/mailwarden.conf) writes one row per (login, protocol)
-- through dict-sql when a user logs in over IMAP or POP3: the key
-- shared/last-login/<protocol>/<login>, the value the UNIX time in seconds. The triggers
-- copy every write into mailboxes.last_login of the mailbox with address = username,
-- which 'mailwarden user show' prints. A name that is no mailbox is kept here and copied
-- nowhere. The latest write wins.
--
-- The dict writes with INSERT ... ON DUPLICATE KEY UPDATE (the insert trigger fires for
-- a first login, the update trigger afterwards). Dovecot's account needs SELECT, INSERT
-- and UPDATE on dovecot_last_login (MariaDB checks SELECT for the column the UPDATE part
-- names) and nothing on mailboxes: the triggers run with the rights of their DEFINER, the
-- account that ran 'mailwarden db upgrade' (see 0004 for the privileges that needs).

CREATE TABLE dovecot_last_login (
  username VARCHAR(320) NOT NULL,
  service VARCHAR(32) NOT NULL,
  last_login BIGINT NULL DEFAULT NULL,
  PRIMARY KEY (username, service)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TRIGGER dovecot_last_login_after_insert AFTER INSERT ON dovecot_last_login
  FOR EACH ROW
  UPDATE mailboxes SET last_login = COALESCE(NEW.last_login, last_login)
   WHERE address = NEW.username;

CREATE TRIGGER dovecot_last_login_after_update AFTER UPDATE ON dovecot_last_login
  FOR EACH ROW
  UPDATE mailboxes SET last_login = COALESCE(NEW.last_login, last_login)
   WHERE address = NEW.username;
