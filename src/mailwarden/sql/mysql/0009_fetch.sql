-- mailwarden schema 0009 (MariaDB/MySQL): the mail fetcher (docs/fetch.md).
--
-- fetch_accounts: one remote POP3 or IMAP account a mailbox collects from. tls is how
-- the connection is protected: 'tls' (implicit TLS, ports 995/993), 'starttls' or
-- 'none'; verify_cert = 0 accepts a certificate that does not verify (self-signed).
-- password_enc is the remote password encrypted with the key file ([fetch] key_file,
-- Fernet): it must be recoverable to log in, so it cannot be hashed. keep = 1 leaves the
-- messages on the server; 0 deletes each one after the local MTA accepted it. folder is
-- the IMAP mailbox (ignored for POP3). last_* describe the latest run.
--
-- fetch_seen: the messages of an account already handled, so nothing is fetched twice:
-- uid_key is the POP3 UIDL, or 'UIDVALIDITY:UID' for IMAP; digest is a hash of the
-- message's Message-ID (or header block) and size, used to recognise messages after an
-- IMAP server renumbered them (a new UIDVALIDITY). state 'delivered' = the local MTA
-- answered 250 (may be deleted on the server when keep = 0); 'refused' = the local MTA
-- refused it permanently (5xx): recorded, kept on the server, never retried.

CREATE TABLE fetch_accounts (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  mailbox_id INT UNSIGNED NOT NULL,
  protocol VARCHAR(8) NOT NULL,
  host VARCHAR(255) NOT NULL,
  port INT UNSIGNED NOT NULL,
  tls VARCHAR(16) NOT NULL DEFAULT 'tls',
  verify_cert TINYINT(1) NOT NULL DEFAULT 1,
  username VARCHAR(255) NOT NULL,
  password_enc TEXT NOT NULL,
  folder VARCHAR(255) NOT NULL DEFAULT 'INBOX',
  keep TINYINT(1) NOT NULL DEFAULT 1,
  interval_seconds INT UNSIGNED NOT NULL DEFAULT 300,
  enabled TINYINT(1) NOT NULL DEFAULT 1,
  created_at BIGINT NOT NULL DEFAULT 0,
  last_run_at BIGINT NULL,
  last_result VARCHAR(16) NULL,
  last_error VARCHAR(1000) NULL,
  last_fetched INT UNSIGNED NOT NULL DEFAULT 0,
  UNIQUE KEY uq_fetch_accounts (mailbox_id, protocol, host(100), port, username(100), folder(100)),
  CONSTRAINT fk_fetch_accounts_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  CONSTRAINT ck_fetch_accounts_protocol CHECK (protocol IN ('pop3', 'imap')),
  CONSTRAINT ck_fetch_accounts_tls CHECK (tls IN ('tls', 'starttls', 'none'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE fetch_seen (
  account_id INT UNSIGNED NOT NULL,
  uid_key VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  digest CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
  state VARCHAR(16) NOT NULL DEFAULT 'delivered',
  at BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (account_id, uid_key),
  KEY ix_fetch_seen_digest (account_id, digest),
  CONSTRAINT fk_fetch_seen_account FOREIGN KEY (account_id) REFERENCES fetch_accounts (id) ON DELETE CASCADE,
  CONSTRAINT ck_fetch_seen_state CHECK (state IN ('delivered', 'refused'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
