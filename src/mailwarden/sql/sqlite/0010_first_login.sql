-- mailwarden schema 0010 (SQLite): provisioning at a mailbox's first login.
--
-- mailboxes.provisioned_at: the UNIX time of the mailbox's first successful login (IMAP
-- or POP3 through Dovecot's post-login script, or the API's /me), set once by
-- 'mailwarden user first-login' (ops.logins.first_login); NULL until then. A second
-- login finds it set and does nothing.
ALTER TABLE mailboxes ADD COLUMN provisioned_at INTEGER NULL;
