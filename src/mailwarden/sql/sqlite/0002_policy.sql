-- mailwarden schema 0002 (SQLite): relay networks, send-as, spam settings and
-- allow/block lists, vacation, rate limits, quota usage, traffic.
-- "scope" columns hold 'global', a domain name, an address, or (rate limits) a client
-- network; the *_id foreign keys make rows disappear with their domain or mailbox.

CREATE TABLE relay_networks (
  id INTEGER PRIMARY KEY,
  network TEXT COLLATE NOCASE NOT NULL,
  expires_at INTEGER NULL,
  note TEXT COLLATE NOCASE NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_relay_networks UNIQUE (network)
);

CREATE TABLE sendas_grants (
  id INTEGER PRIMARY KEY,
  mailbox_id INTEGER NOT NULL,
  address TEXT COLLATE NOCASE NOT NULL,
  CONSTRAINT uq_sendas_pair UNIQUE (mailbox_id, address),
  CONSTRAINT fk_sendas_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
);

CREATE INDEX ix_sendas_address ON sendas_grants (address);

CREATE TABLE spam_settings (
  id INTEGER PRIMARY KEY,
  scope TEXT COLLATE NOCASE NOT NULL,
  domain_id INTEGER NULL,
  mailbox_id INTEGER NULL,
  action TEXT COLLATE NOCASE NULL,
  threshold REAL NULL,
  enforce INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_spam_settings_scope UNIQUE (scope),
  CONSTRAINT fk_spam_settings_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_spam_settings_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  CONSTRAINT ck_spam_settings_action CHECK (action IS NULL OR action IN ('tag', 'folder', 'discard', 'reject'))
);

INSERT INTO spam_settings (scope, action, threshold, enforce) VALUES ('global', 'folder', 5.0, 0);

CREATE TABLE access_lists (
  id INTEGER PRIMARY KEY,
  scope TEXT COLLATE NOCASE NOT NULL,
  domain_id INTEGER NULL,
  mailbox_id INTEGER NULL,
  kind TEXT COLLATE NOCASE NOT NULL,
  pattern TEXT COLLATE NOCASE NOT NULL,
  created_at INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_access_lists UNIQUE (scope, pattern),
  CONSTRAINT fk_access_lists_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_access_lists_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  CONSTRAINT ck_access_lists_kind CHECK (kind IN ('allow', 'block'))
);

CREATE TABLE vacations (
  mailbox_id INTEGER NOT NULL PRIMARY KEY,
  subject TEXT COLLATE NOCASE NOT NULL,
  body TEXT NOT NULL,
  starts_at INTEGER NULL,
  ends_at INTEGER NULL,
  interval_seconds INTEGER NOT NULL DEFAULT 604800,
  active INTEGER NOT NULL DEFAULT 1,
  updated_at INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT fk_vacations_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
);

CREATE TABLE vacation_log (
  mailbox_id INTEGER NOT NULL,
  sender TEXT COLLATE NOCASE NOT NULL,
  sent_at INTEGER NOT NULL,
  PRIMARY KEY (mailbox_id, sender),
  CONSTRAINT fk_vacation_log_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
);

CREATE TABLE rate_limits (
  id INTEGER PRIMARY KEY,
  scope TEXT COLLATE NOCASE NOT NULL,
  domain_id INTEGER NULL,
  mailbox_id INTEGER NULL,
  period TEXT COLLATE NOCASE NOT NULL,
  max_messages INTEGER NOT NULL DEFAULT 0,
  max_recipients INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_rate_limits UNIQUE (scope, period),
  CONSTRAINT fk_rate_limits_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_rate_limits_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  CONSTRAINT ck_rate_limits_period CHECK (period IN ('hour', 'day'))
);

CREATE TABLE rate_counters (
  counter_key TEXT COLLATE NOCASE NOT NULL,
  period TEXT COLLATE NOCASE NOT NULL,
  window_start INTEGER NOT NULL,
  messages INTEGER NOT NULL DEFAULT 0,
  recipients INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (counter_key, period, window_start)
);

CREATE TABLE quota_usage (
  mailbox_id INTEGER NOT NULL PRIMARY KEY,
  bytes INTEGER NOT NULL DEFAULT 0,
  messages INTEGER NOT NULL DEFAULT 0,
  warned_percent INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT fk_quota_usage_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
);

CREATE TABLE traffic (
  domain_id INTEGER NOT NULL,
  day TEXT NOT NULL,
  messages_in INTEGER NOT NULL DEFAULT 0,
  bytes_in INTEGER NOT NULL DEFAULT 0,
  messages_out INTEGER NOT NULL DEFAULT 0,
  bytes_out INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (domain_id, day),
  CONSTRAINT fk_traffic_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE
);
