-- mailwarden schema 0009 (SQLite): the mail fetcher (docs/fetch.md).
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
  id INTEGER PRIMARY KEY,
  mailbox_id INTEGER NOT NULL,
  protocol TEXT NOT NULL CHECK (protocol IN ('pop3', 'imap')),
  host TEXT NOT NULL,
  port INTEGER NOT NULL,
  tls TEXT NOT NULL DEFAULT 'tls' CHECK (tls IN ('tls', 'starttls', 'none')),
  verify_cert INTEGER NOT NULL DEFAULT 1,
  username TEXT NOT NULL,
  password_enc TEXT NOT NULL,
  folder TEXT NOT NULL DEFAULT 'INBOX',
  keep INTEGER NOT NULL DEFAULT 1,
  interval_seconds INTEGER NOT NULL DEFAULT 300,
  enabled INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL DEFAULT 0,
  last_run_at INTEGER NULL,
  last_result TEXT NULL,
  last_error TEXT NULL,
  last_fetched INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_fetch_accounts UNIQUE (mailbox_id, protocol, host, port, username, folder),
  CONSTRAINT fk_fetch_accounts_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
);

CREATE TABLE fetch_seen (
  account_id INTEGER NOT NULL,
  uid_key TEXT NOT NULL,
  digest TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'delivered' CHECK (state IN ('delivered', 'refused')),
  at INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (account_id, uid_key),
  CONSTRAINT fk_fetch_seen_account FOREIGN KEY (account_id) REFERENCES fetch_accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_fetch_seen_digest ON fetch_seen (account_id, digest);
