-- mailwarden schema 0002 (MariaDB/MySQL): relay networks, send-as, spam settings and
-- allow/block lists, vacation, rate limits, quota usage, traffic.
-- "scope" columns hold 'global', a domain name, an address, or (rate limits) a client
-- network; the *_id foreign keys make rows disappear with their domain or mailbox.

CREATE TABLE relay_networks (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  network VARCHAR(64) NOT NULL,
  expires_at BIGINT NULL,
  note VARCHAR(255) NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT uq_relay_networks UNIQUE (network)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE sendas_grants (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  mailbox_id INT UNSIGNED NOT NULL,
  address VARCHAR(320) NOT NULL,
  CONSTRAINT uq_sendas_pair UNIQUE (mailbox_id, address),
  CONSTRAINT fk_sendas_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  INDEX ix_sendas_address (address)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE spam_settings (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  scope VARCHAR(330) NOT NULL,
  domain_id INT UNSIGNED NULL,
  mailbox_id INT UNSIGNED NULL,
  action VARCHAR(8) NULL,
  threshold DOUBLE NULL,
  enforce TINYINT(1) NOT NULL DEFAULT 0,
  CONSTRAINT uq_spam_settings_scope UNIQUE (scope),
  CONSTRAINT fk_spam_settings_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_spam_settings_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  CONSTRAINT ck_spam_settings_action CHECK (action IS NULL OR action IN ('tag', 'folder', 'discard', 'reject'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

INSERT INTO spam_settings (scope, action, threshold, enforce) VALUES ('global', 'folder', 5.0, 0);

CREATE TABLE access_lists (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  scope VARCHAR(330) NOT NULL,
  domain_id INT UNSIGNED NULL,
  mailbox_id INT UNSIGNED NULL,
  kind VARCHAR(5) NOT NULL,
  pattern VARCHAR(320) NOT NULL,
  created_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT uq_access_lists UNIQUE (scope, pattern),
  CONSTRAINT fk_access_lists_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_access_lists_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  CONSTRAINT ck_access_lists_kind CHECK (kind IN ('allow', 'block'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE vacations (
  mailbox_id INT UNSIGNED NOT NULL PRIMARY KEY,
  subject VARCHAR(255) NOT NULL,
  body TEXT NOT NULL,
  starts_at BIGINT NULL,
  ends_at BIGINT NULL,
  interval_seconds INT UNSIGNED NOT NULL DEFAULT 604800,
  active TINYINT(1) NOT NULL DEFAULT 1,
  updated_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT fk_vacations_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE vacation_log (
  mailbox_id INT UNSIGNED NOT NULL,
  sender VARCHAR(320) NOT NULL,
  sent_at BIGINT NOT NULL,
  PRIMARY KEY (mailbox_id, sender),
  CONSTRAINT fk_vacation_log_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE rate_limits (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  scope VARCHAR(330) NOT NULL,
  domain_id INT UNSIGNED NULL,
  mailbox_id INT UNSIGNED NULL,
  period VARCHAR(4) NOT NULL,
  max_messages INT UNSIGNED NOT NULL DEFAULT 0,
  max_recipients INT UNSIGNED NOT NULL DEFAULT 0,
  CONSTRAINT uq_rate_limits UNIQUE (scope, period),
  CONSTRAINT fk_rate_limits_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE,
  CONSTRAINT fk_rate_limits_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE,
  CONSTRAINT ck_rate_limits_period CHECK (period IN ('hour', 'day'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE rate_counters (
  counter_key VARCHAR(340) NOT NULL,
  period VARCHAR(4) NOT NULL,
  window_start BIGINT NOT NULL,
  messages INT UNSIGNED NOT NULL DEFAULT 0,
  recipients INT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (counter_key, period, window_start)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE quota_usage (
  mailbox_id INT UNSIGNED NOT NULL PRIMARY KEY,
  bytes BIGINT NOT NULL DEFAULT 0,
  messages BIGINT NOT NULL DEFAULT 0,
  warned_percent INT UNSIGNED NOT NULL DEFAULT 0,
  updated_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT fk_quota_usage_mailbox FOREIGN KEY (mailbox_id) REFERENCES mailboxes (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE traffic (
  domain_id INT UNSIGNED NOT NULL,
  day CHAR(10) NOT NULL,
  messages_in BIGINT UNSIGNED NOT NULL DEFAULT 0,
  bytes_in BIGINT UNSIGNED NOT NULL DEFAULT 0,
  messages_out BIGINT UNSIGNED NOT NULL DEFAULT 0,
  bytes_out BIGINT UNSIGNED NOT NULL DEFAULT 0,
  PRIMARY KEY (domain_id, day),
  CONSTRAINT fk_traffic_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
