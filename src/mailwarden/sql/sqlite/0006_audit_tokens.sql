-- mailwarden schema 0006 (SQLite): the audit trail and the API tokens.
--
-- audit_log: one row per change made through the operations layer (mailwarden.ops),
-- whoever made it: the CLI ("cli:root@host"), the REST API ("api:token-name@ip") or a
-- mailbox user on /me ("me:user@domain@ip"). before_json/after_json are the object's
-- record before and after the change (NULL for an add / a remove), never a secret: the
-- ops layer drops password hashes and token values before it writes them. domain is the
-- mail domain the change belongs to (NULL for global objects: relay networks, tokens),
-- for "mailwarden audit list --domain" and the API's scoping of domain admins.
--
-- api_tokens: bearer tokens of the REST API. Only the SHA-256 of the token is stored
-- (token_hash, hex); the token itself is shown once by "mailwarden token create".
-- api_token_domains: the domains a domain-admin token may see (names, so a token keeps
-- its scope when a domain is removed and added again).

CREATE TABLE audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  object TEXT NOT NULL,
  domain TEXT,
  before_json TEXT,
  after_json TEXT
);

CREATE INDEX audit_log_at ON audit_log (at);

CREATE INDEX audit_log_domain ON audit_log (domain, id);

CREATE TABLE api_tokens (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  token_hash TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL CHECK (role IN ('admin', 'domain-admin', 'readonly')),
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER,
  last_used_at INTEGER
);

CREATE TABLE api_token_domains (
  token_id INTEGER NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
  domain TEXT NOT NULL,
  PRIMARY KEY (token_id, domain)
);
