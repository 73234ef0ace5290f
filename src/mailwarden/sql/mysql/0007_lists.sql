-- mailwarden schema 0008 (MariaDB/MySQL): mailing lists, run by mlmmj (docs/lists.md).
--
-- mailing_lists: one row per list address (list@domain, a local domain). moderated = posts
-- wait for a moderator; subscribers_only = only members may post (mlmmj's subonlypost:
-- others get mlmmj's denial reply). mailwarden writes each list's mlmmj directory
-- (<spool>/<domain>/<local_part>/control/...) from these rows (mailwarden.lists.mlmmj).
-- list_owners: who gets list+owner@ mail and mlmmj's notices (any address).
-- list_members: subscribers; mode normal | digest | nomail (mlmmj's subscribers.d,
-- digesters.d, nomailsubs.d); moderator = listed in control/moderators.
--
-- Views: a list address maps to itself in postfix_virtual_alias (so Postfix accepts it
-- and list+subscribe@ keeps its extension), list@alias-domain maps to it in
-- postfix_alias_domain_map, and postfix_list_transport routes it to mlmmj's pipe
-- service: mlmmj:<domain>/<local_part> ($nexthop = the list directory below the spool).
-- Postfix tries list+ext@domain, then list@domain (transport(5)).

CREATE TABLE mailing_lists (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  domain_id INT UNSIGNED NOT NULL,
  local_part VARCHAR(64) NOT NULL,
  address VARCHAR(320) NOT NULL,
  moderated TINYINT(1) NOT NULL DEFAULT 0,
  subscribers_only TINYINT(1) NOT NULL DEFAULT 1,
  active TINYINT(1) NOT NULL DEFAULT 1,
  created_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT uq_mailing_lists_address UNIQUE (address),
  CONSTRAINT fk_mailing_lists_domain FOREIGN KEY (domain_id) REFERENCES domains (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE list_owners (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  list_id INT UNSIGNED NOT NULL,
  address VARCHAR(320) NOT NULL,
  CONSTRAINT uq_list_owners UNIQUE (list_id, address),
  CONSTRAINT fk_list_owners_list FOREIGN KEY (list_id) REFERENCES mailing_lists (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE list_members (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  list_id INT UNSIGNED NOT NULL,
  address VARCHAR(320) NOT NULL,
  mode VARCHAR(8) NOT NULL DEFAULT 'normal' CHECK (mode IN ('normal', 'digest', 'nomail')),
  moderator TINYINT(1) NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT uq_list_members UNIQUE (list_id, address),
  CONSTRAINT fk_list_members_list FOREIGN KEY (list_id) REFERENCES mailing_lists (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE INDEX ix_list_members_address ON list_members (address);

DROP VIEW postfix_virtual_alias;

CREATE VIEW postfix_virtual_alias AS
  SELECT m.address AS address, m.address AS destination
  FROM mailboxes m JOIN domains d ON d.id = m.domain_id
  WHERE m.active = 1 AND d.active = 1 AND d.kind = 'local'
    AND (m.forward_keep_copy = 1 OR NOT EXISTS (SELECT 1 FROM forwards f WHERE f.mailbox_id = m.id))
  UNION ALL
  SELECT m.address AS address, f.destination AS destination
  FROM forwards f JOIN mailboxes m ON m.id = f.mailbox_id JOIN domains d ON d.id = m.domain_id
  WHERE m.active = 1 AND d.active = 1 AND d.kind = 'local'
  UNION ALL
  SELECT a.source AS address,
         CASE WHEN a.destination = 'discard' THEN 'discard@discard.mailwarden.invalid'
              ELSE a.destination END AS destination
  FROM aliases a JOIN domains d ON d.id = a.domain_id
  WHERE a.active = 1 AND d.active = 1
  UNION ALL
  SELECT l.address AS address, l.address AS destination
  FROM mailing_lists l JOIN domains d ON d.id = l.domain_id
  WHERE l.active = 1 AND d.active = 1 AND d.kind = 'local';

DROP VIEW postfix_alias_domain_map;

CREATE VIEW postfix_alias_domain_map AS
  SELECT ad.name AS alias_domain, m.local_part AS local_part, m.address AS destination
  FROM domains ad JOIN domains t ON t.id = ad.alias_of JOIN mailboxes m ON m.domain_id = t.id
  WHERE ad.kind = 'alias' AND ad.active = 1 AND t.active = 1 AND m.active = 1
  UNION
  SELECT ad.name AS alias_domain, a.local_part AS local_part,
         CASE WHEN a.local_part <> '' THEN a.source
              WHEN a.destination = 'discard' THEN 'discard@discard.mailwarden.invalid'
              ELSE a.destination END AS destination
  FROM domains ad JOIN domains t ON t.id = ad.alias_of JOIN aliases a ON a.domain_id = t.id
  WHERE ad.kind = 'alias' AND ad.active = 1 AND t.active = 1 AND a.active = 1
  UNION
  SELECT ad.name AS alias_domain, l.local_part AS local_part, l.address AS destination
  FROM domains ad JOIN domains t ON t.id = ad.alias_of JOIN mailing_lists l ON l.domain_id = t.id
  WHERE ad.kind = 'alias' AND ad.active = 1 AND t.active = 1 AND l.active = 1;

CREATE VIEW postfix_list_transport AS
  SELECT l.address AS address, CONCAT('mlmmj:', d.name, '/', l.local_part) AS transport
  FROM mailing_lists l JOIN domains d ON d.id = l.domain_id
  WHERE l.active = 1 AND d.active = 1 AND d.kind = 'local';
