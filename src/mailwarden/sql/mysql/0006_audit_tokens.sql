-- mailwarden schema 0006 (MariaDB/MySQL): the audit trail and the API tokens.
--
-- audit_log: one row per change made through the operations layer (mailwarden.ops),
-- whoever made it: the CLI ("cli:root@host"), the REST API ("api:token-name@ip") or a
-- mailbox user on /me ("me:user@domain@ip"). before_json/after_json are the object's
-- record before and after the change (NULL for an add / a remove), never a secret: the
-- ops layer drops password hashes and token values before it writes them. domain is the
-- mail domain the change belongs to (NULL for global objects: relay networks, tokens).
--
-- api_tokens: bearer tokens of the REST API. Only the SHA-256 of the token is stored
-- (token_hash, hex); the token itself is shown once by "mailwarden token create".
-- api_token_domains: the domains a domain-admin token may see (names).

CREATE TABLE audit_log (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  at BIGINT NOT NULL,
  actor VARCHAR(400) NOT NULL,
  action VARCHAR(64) NOT NULL,
  object VARCHAR(400) NOT NULL,
  domain VARCHAR(255) NULL DEFAULT NULL,
  before_json MEDIUMTEXT NULL,
  after_json MEDIUMTEXT NULL,
  KEY audit_log_at (at),
  KEY audit_log_domain (domain, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE api_tokens (
  id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(128) NOT NULL,
  token_hash CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
  role VARCHAR(16) NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NULL DEFAULT NULL,
  revoked_at BIGINT NULL DEFAULT NULL,
  last_used_at BIGINT NULL DEFAULT NULL,
  UNIQUE KEY api_tokens_name (name),
  UNIQUE KEY api_tokens_hash (token_hash),
  CONSTRAINT api_tokens_role CHECK (role IN ('admin', 'domain-admin', 'readonly'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE api_token_domains (
  token_id INT NOT NULL,
  domain VARCHAR(255) NOT NULL,
  PRIMARY KEY (token_id, domain),
  CONSTRAINT api_token_domains_token FOREIGN KEY (token_id) REFERENCES api_tokens (id)
    ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
