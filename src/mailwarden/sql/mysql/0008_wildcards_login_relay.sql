-- mailwarden schema 0009 (MariaDB/MySQL): wildcard domains and POP-before-SMTP relay entries.
--
-- postfix_domain_classes: every domain, switched off or not, with the Postfix address
-- class it gives the names it hosts: virtual (local), alias (alias domain with an active
-- target), relay, or none (switched off). A domain named '*.example.test' hosts every
-- subdomain of example.test; the exact name wins, then the longest wildcard, and a
-- switched-off winner hosts nothing (core.domainmatch). Unlike the other views it keeps
-- switched-off rows, because they still win over a wildcard above them. The contrib
-- queries pick the best row for Postfix's lookup key (contrib/postfix/mysql/*.cf).
CREATE VIEW postfix_domain_classes AS
  SELECT d.name AS domain,
         CASE WHEN d.active = 0 THEN 'none'
              WHEN d.kind = 'local' THEN 'virtual'
              WHEN d.kind = 'relay' THEN 'relay'
              WHEN t.active = 1 THEN 'alias'
              ELSE 'none' END AS address_class,
         CASE WHEN d.kind = 'relay' AND d.active = 1 THEN d.transport END AS transport
  FROM domains d LEFT JOIN domains t ON t.id = d.alias_of;

-- relay_networks.source: who made the entry: 'admin' (mailwarden relay add) or
-- 'pop-before-smtp' (mailwarden relay allow-login, from Dovecot's post-login script).
ALTER TABLE relay_networks ADD COLUMN source VARCHAR(32) NOT NULL DEFAULT 'admin';
