-- mailwarden schema 0004 (MariaDB/MySQL): usage written by Dovecot's quota_clone plugin.
--
-- Dovecot (quota = maildir, the same maildirsize the mailwarden LDA keeps) writes each
-- user's usage through dict-sql into dovecot_quota after every change it makes, IMAP
-- deletions included (contrib/dovecot/91-mailwarden-quota-clone.conf and
-- dovecot-dict-mailwarden.conf.ext.mysql). The triggers copy it into quota_usage, which
-- policyd reads at RCPT, so a mailbox emptied over IMAP is accepted again.
--
-- username is the Dovecot login, i.e. the mailbox address; a name that is no mailbox is
-- kept here and copied nowhere. NULL = not written yet (the dict may set storage and
-- messages in two statements); the trigger then keeps the old quota_usage value.
-- warned_percent is left alone (the LDA owns it).
--
-- Dovecot's account needs only INSERT, UPDATE (and SELECT) on dovecot_quota: a trigger
-- runs with the rights of its DEFINER, the account that ran 'mailwarden db upgrade'
-- (which needs the TRIGGER privilege; with binary logging on, MariaDB also wants SUPER
-- or log_bin_trust_function_creators = 1 to create a trigger).

CREATE TABLE dovecot_quota (
  username VARCHAR(320) NOT NULL PRIMARY KEY,
  bytes BIGINT NULL DEFAULT NULL,
  messages BIGINT NULL DEFAULT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TRIGGER dovecot_quota_after_insert AFTER INSERT ON dovecot_quota FOR EACH ROW
  INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at)
  SELECT m.id, COALESCE(NEW.bytes, 0), COALESCE(NEW.messages, 0), UNIX_TIMESTAMP()
    FROM mailboxes m WHERE m.address = NEW.username
  ON DUPLICATE KEY UPDATE
    bytes = COALESCE(NEW.bytes, quota_usage.bytes),
    messages = COALESCE(NEW.messages, quota_usage.messages),
    updated_at = UNIX_TIMESTAMP();

CREATE TRIGGER dovecot_quota_after_update AFTER UPDATE ON dovecot_quota FOR EACH ROW
  INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at)
  SELECT m.id, COALESCE(NEW.bytes, 0), COALESCE(NEW.messages, 0), UNIX_TIMESTAMP()
    FROM mailboxes m WHERE m.address = NEW.username
  ON DUPLICATE KEY UPDATE
    bytes = COALESCE(NEW.bytes, quota_usage.bytes),
    messages = COALESCE(NEW.messages, quota_usage.messages),
    updated_at = UNIX_TIMESTAMP();
