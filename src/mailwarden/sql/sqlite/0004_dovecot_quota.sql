-- mailwarden schema 0004 (SQLite): usage written by Dovecot's quota_clone plugin.
--
-- Dovecot (quota = maildir, the same maildirsize the mailwarden LDA keeps) writes each
-- user's usage through dict-sql into dovecot_quota after every change it makes, IMAP
-- deletions included (contrib/dovecot/91-mailwarden-quota-clone.conf and
-- dovecot-dict-mailwarden.conf.ext.sqlite). The triggers copy it into quota_usage, which
-- policyd reads at RCPT, so a mailbox emptied over IMAP is accepted again.
--
-- username is the Dovecot login, i.e. the mailbox address; a name that is no mailbox is
-- kept here and copied nowhere. NULL = not written yet (the dict may set storage and
-- messages in two statements); the trigger then keeps the old quota_usage value.
-- warned_percent is left alone (the LDA owns it).
--
-- Dovecot's dict-sql may write with INSERT, INSERT ... ON CONFLICT DO UPDATE or INSERT OR
-- REPLACE: the first and the last fire the insert trigger, the upsert the update trigger.
-- The bodies neither INSERT OR ... nor upsert: a conflict clause of the statement that
-- fires a trigger overrides those inside it (REPLACE would reset warned_percent).
--
-- Layout: mailwarden splits migration files at a ';' that ends a line, so the statements
-- inside a trigger body end in '; ' followed by more text on the same line.

CREATE TABLE dovecot_quota (
  username TEXT COLLATE NOCASE NOT NULL PRIMARY KEY,
  bytes INTEGER,
  messages INTEGER
);

CREATE TRIGGER dovecot_quota_after_insert AFTER INSERT ON dovecot_quota
BEGIN
  UPDATE quota_usage
     SET bytes = COALESCE(NEW.bytes, bytes), messages = COALESCE(NEW.messages, messages),
         updated_at = CAST(strftime('%s', 'now') AS INTEGER)
   WHERE mailbox_id = (SELECT id FROM mailboxes WHERE address = NEW.username)
  ; INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at)
  SELECT m.id, COALESCE(NEW.bytes, 0), COALESCE(NEW.messages, 0),
         CAST(strftime('%s', 'now') AS INTEGER)
    FROM mailboxes m
   WHERE m.address = NEW.username
     AND NOT EXISTS (SELECT 1 FROM quota_usage q WHERE q.mailbox_id = m.id)
  ; END;

CREATE TRIGGER dovecot_quota_after_update AFTER UPDATE ON dovecot_quota
BEGIN
  UPDATE quota_usage
     SET bytes = COALESCE(NEW.bytes, bytes), messages = COALESCE(NEW.messages, messages),
         updated_at = CAST(strftime('%s', 'now') AS INTEGER)
   WHERE mailbox_id = (SELECT id FROM mailboxes WHERE address = NEW.username)
  ; INSERT INTO quota_usage (mailbox_id, bytes, messages, updated_at)
  SELECT m.id, COALESCE(NEW.bytes, 0), COALESCE(NEW.messages, 0),
         CAST(strftime('%s', 'now') AS INTEGER)
    FROM mailboxes m
   WHERE m.address = NEW.username
     AND NOT EXISTS (SELECT 1 FROM quota_usage q WHERE q.mailbox_id = m.id)
  ; END;
