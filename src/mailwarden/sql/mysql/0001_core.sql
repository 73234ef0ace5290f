-- mailwarden schema 0001 (MariaDB/MySQL): domains, groups, mailboxes, aliases, forwards.
-- Times are UNIX seconds (UTC) in BIGINT columns so both dialects store the same values.

CREATE TABLE domains (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(253) NOT NULL,
  kind VARCHAR(8) NOT NULL DEFAULT 'local',
  alias_of INT UNSIGNED NULL,
  transport VARCHAR(255) NULL,
  max_mailboxes INT UNSIGNED NOT NULL DEFAULT 0,
  max_aliases INT UNSIGNED NOT NULL DEFAULT 0,
  default_quota_bytes BIGINT UNSIGNED NOT NULL DEFAULT 0,
  max_message_bytes BIGINT UNSIGNED NOT NULL DEFAULT 0,
  active TINYINT(1) NOT NULL DEFAULT 1,
  created_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT uq_domains_name UNIQUE (name),
  CONSTRAINT fk_domains_alias_of FOREIGN KEY (alias_of) REFERENCES domains (id) ON DELETE RESTRICT,
  CONSTRAINT ck_domains_kind CHECK (kind IN ('local', 'alias', 'relay')),
  CONSTRAINT ck_domains_alias CHECK ((kind = 'alias') = (alias_of IS NOT NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE mail_groups (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  imap TINYINT(1) NOT NULL DEFAULT 1,
  pop3 TINYINT(1) NOT NULL DEFAULT 1,
  smtp TINYINT(1) NOT NULL DEFAULT 1,
  sieve TINYINT(1) NOT NULL DEFAULT 1,
  CONSTRAINT uq_mail_groups_name UNIQUE (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO mail_groups (id, name) VALUES (1, 'default');

CREATE TABLE mailboxes (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  domain_id INT UNSIGNED NOT NULL,
  local_part VARCHAR(64) NOT NULL,
  address VARCHAR(320) NOT NULL,
  password VARCHAR(255) NOT NULL,
  name VARCHAR(255) NOT NULL DEFAULT '',
  maildir VARCHAR(512) NOT NULL,
  quota_bytes BIGINT UNSIGNED NOT NULL DEFAULT 0,
  quota_messages BIGINT UNSIGNED NOT NULL DEFAULT 0,
  group_id INT UNSIGNED NOT NULL DEFAULT 1,
  services INT UNSIGNED NOT NULL DEFAULT 7,
  forward_keep_copy TINYINT(1) NOT NULL DEFAULT 0,
  active TINYINT(1) NOT NULL DEFAULT 1,
  last_login BIGINT NULL,
  created_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT uq_mailboxes_address UNIQUE (address),
  CONSTRAINT uq_mailboxes_local UNIQUE (domain_id, local_part),
  CONSTRAINT uq_mailboxes_maildir UNIQUE (maildir),
  CONSTRAINT fk_mailboxes_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_mailboxes_group FOREIGN KEY (group_id) REFERENCES mail_groups (id) ON DELETE RESTRICT,
  CONSTRAINT ck_mailboxes_local CHECK (local_part <> '')
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- One row per (source, destination). local_part '' is the catch-all '@domain'.
-- destination 'discard' is the discard sink.
CREATE TABLE aliases (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  domain_id INT UNSIGNED NOT NULL,
  local_part VARCHAR(64) NOT NULL,
  source VARCHAR(320) NOT NULL,
  destination VARCHAR(320) NOT NULL,
  active TINYINT(1) NOT NULL DEFAULT 1,
  created_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT uq_aliases_pair UNIQUE (source, destination),
  CONSTRAINT fk_aliases_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  INDEX ix_aliases_local (domain_id, local_part),
  INDEX ix_aliases_destination (destination)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE forwards (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  mailbox_id INT UNSIGNED NOT NULL,
  destination VARCHAR(320) NOT NULL,
  CONSTRAINT uq_forwards_pair UNIQUE (mailbox_id, destination),
  CONSTRAINT fk_forwards_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
