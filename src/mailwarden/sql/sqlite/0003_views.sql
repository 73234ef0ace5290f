-- mailwarden schema 0003 (SQLite): the views Postfix, Dovecot and Courier read.
-- These views are the contract (see sql/README.md); tables may change behind them.

CREATE VIEW postfix_mailbox_domains AS
  SELECT name AS domain FROM domains WHERE kind = 'local' AND active = 1;

CREATE VIEW postfix_alias_domains AS
  SELECT d.name AS domain FROM domains d JOIN domains t ON t.id = d.alias_of
  WHERE d.kind = 'alias' AND d.active = 1 AND t.active = 1;

CREATE VIEW postfix_relay_domains AS
  SELECT name AS domain FROM domains WHERE kind = 'relay' AND active = 1;

CREATE VIEW postfix_transport AS
  SELECT name AS domain, transport FROM domains
  WHERE kind = 'relay' AND active = 1 AND transport IS NOT NULL AND transport <> ''
  UNION ALL
  SELECT 'discard.mailwarden.invalid' AS domain, 'discard:' AS transport;

CREATE VIEW postfix_mailboxes AS
  SELECT m.address AS address, m.maildir AS maildir
  FROM mailboxes m JOIN domains d ON d.id = m.domain_id
  WHERE m.active = 1 AND d.active = 1 AND d.kind = 'local';

-- Every active mailbox maps to itself (unless it forwards without keeping a copy) so that
-- Postfix finds user@domain before it tries the catch-all @domain.
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
  WHERE a.active = 1 AND d.active = 1;

-- x@alias.test -> x@target.test for every mailbox or alias x of the target domain;
-- @alias.test -> the target's catch-all destinations. Query by alias_domain and local_part.
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
  WHERE ad.kind = 'alias' AND ad.active = 1 AND t.active = 1 AND a.active = 1;

-- Which SASL logins may use an envelope sender (smtpd_sender_login_maps):
-- the mailbox itself, exact aliases that deliver to it, the same local part in its alias
-- domains, and explicit send-as grants.
CREATE VIEW postfix_sender_login AS
  SELECT m.address AS sender, m.address AS login
  FROM mailboxes m JOIN domains d ON d.id = m.domain_id
  WHERE m.active = 1 AND d.active = 1
  UNION
  SELECT a.source AS sender, m.address AS login
  FROM aliases a JOIN mailboxes m ON m.address = a.destination JOIN domains d ON d.id = m.domain_id
  WHERE a.local_part <> '' AND a.active = 1 AND m.active = 1 AND d.active = 1
  UNION
  SELECT (m.local_part || '@' || ad.name) AS sender, m.address AS login
  FROM mailboxes m JOIN domains d ON d.id = m.domain_id JOIN domains ad ON ad.alias_of = m.domain_id
  WHERE m.active = 1 AND d.active = 1 AND ad.active = 1
  UNION
  SELECT g.address AS sender, m.address AS login
  FROM sendas_grants g JOIN mailboxes m ON m.id = g.mailbox_id JOIN domains d ON d.id = m.domain_id
  WHERE m.active = 1 AND d.active = 1;

CREATE VIEW dovecot_users AS
  SELECT m.address AS user, m.password AS password, m.maildir AS home,
         ('*:bytes=' || m.quota_bytes || ':messages=' || m.quota_messages) AS quota_rule,
         m.quota_bytes AS quota_bytes, m.quota_messages AS quota_messages,
         g.imap AS allow_imap, g.pop3 AS allow_pop3, g.smtp AS allow_smtp, g.sieve AS allow_sieve,
         m.name AS name
  FROM mailboxes m JOIN domains d ON d.id = m.domain_id JOIN mail_groups g ON g.id = m.group_id
  WHERE m.active = 1 AND d.active = 1 AND d.kind = 'local' AND (m.services & 1) = 1;

CREATE VIEW courier_users AS
  SELECT u.user AS username, u.password AS cryptpw, u.home AS home, u.home AS maildir,
         CASE WHEN u.quota_bytes = 0 AND u.quota_messages = 0 THEN ''
              WHEN u.quota_messages = 0 THEN (u.quota_bytes || 'S')
              WHEN u.quota_bytes = 0 THEN (u.quota_messages || 'C')
              ELSE (u.quota_bytes || 'S,' || u.quota_messages || 'C') END AS quota,
         u.name AS fullname,
         ('disableimap=' || (1 - u.allow_imap) || ',disablepop3=' || (1 - u.allow_pop3)) AS options
  FROM dovecot_users u;
