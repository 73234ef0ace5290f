-- mailwarden schema 0001 (SQLite): domains, groups, mailboxes, aliases, forwards.
-- Times are UNIX seconds (UTC) in INTEGER columns so both dialects store the same values.

CREATE TABLE domains (
  id INTEGER PRIMARY KEY,
  name TEXT COLLATE NOCASE NOT NULL,
  kind TEXT COLLATE NOCASE NOT NULL DEFAULT 'local',
  alias_of INTEGER NULL,
  transport TEXT COLLATE NOCASE NULL,
  max_mailboxes INTEGER NOT NULL DEFAULT 0,
  max_aliases INTEGER NOT NULL DEFAULT 0,
  default_quota_bytes INTEGER NOT NULL DEFAULT 0,
  max_message_bytes INTEGER NOT NULL DEFAULT 0,
  active INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_domains_name UNIQUE (name),
  CONSTRAINT fk_domains_alias_of FOREIGN KEY (alias_of) REFERENCES domains (id) ON DELETE RESTRICT,
  CONSTRAINT ck_domains_kind CHECK (kind IN ('local', 'alias', 'relay')),
  CONSTRAINT ck_domains_alias CHECK ((kind = 'alias') = (alias_of IS NOT NULL))
);

CREATE TABLE mail_groups (
  id INTEGER PRIMARY KEY,
  name TEXT COLLATE NOCASE NOT NULL,
  imap INTEGER NOT NULL DEFAULT 1,
  pop3 INTEGER NOT NULL DEFAULT 1,
  smtp INTEGER NOT NULL DEFAULT 1,
  sieve INTEGER NOT NULL DEFAULT 1,
  CONSTRAINT uq_mail_groups_name UNIQUE (name)
);

INSERT INTO mail_groups (id, name) VALUES (1, 'default');

CREATE TABLE mailboxes (
  id INTEGER PRIMARY KEY,
  domain_id INTEGER NOT NULL,
  local_part TEXT COLLATE NOCASE NOT NULL,
  address TEXT COLLATE NOCASE NOT NULL,
  password TEXT NOT NULL,
  name TEXT COLLATE NOCASE NOT NULL DEFAULT '',
  maildir TEXT COLLATE NOCASE NOT NULL,
  quota_bytes INTEGER NOT NULL DEFAULT 0,
  quota_messages INTEGER NOT NULL DEFAULT 0,
  group_id INTEGER NOT NULL DEFAULT 1,
  services INTEGER NOT NULL DEFAULT 7,
  forward_keep_copy INTEGER NOT NULL DEFAULT 0,
  active INTEGER NOT NULL DEFAULT 1,
  last_login INTEGER NULL,
  created_at INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_mailboxes_address UNIQUE (address),
  CONSTRAINT uq_mailboxes_local UNIQUE (domain_id, local_part),
  CONSTRAINT uq_mailboxes_maildir UNIQUE (maildir),
  CONSTRAINT fk_mailboxes_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_mailboxes_group FOREIGN KEY (group_id) REFERENCES mail_groups (id) ON DELETE RESTRICT,
  CONSTRAINT ck_mailboxes_local CHECK (local_part <> '')
);

-- One row per (source, destination). local_part '' is the catch-all '@domain'.
-- destination 'discard' is the discard sink.
CREATE TABLE aliases (
  id INTEGER PRIMARY KEY,
  domain_id INTEGER NOT NULL,
  local_part TEXT COLLATE NOCASE NOT NULL,
  source TEXT COLLATE NOCASE NOT NULL,
  destination TEXT COLLATE NOCASE NOT NULL,
  active INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT uq_aliases_pair UNIQUE (source, destination),
  CONSTRAINT fk_aliases_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE
);

CREATE INDEX ix_aliases_local ON aliases (domain_id, local_part);
CREATE INDEX ix_aliases_destination ON aliases (destination);

CREATE TABLE forwards (
  id INTEGER PRIMARY KEY,
  mailbox_id INTEGER NOT NULL,
  destination TEXT COLLATE NOCASE NOT NULL,
  CONSTRAINT uq_forwards_pair UNIQUE (mailbox_id, destination),
  CONSTRAINT fk_forwards_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
);
