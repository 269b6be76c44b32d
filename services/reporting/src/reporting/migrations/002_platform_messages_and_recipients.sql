-- Issue 5: count only what the platform sent; match replies to messages by the person, not the string.
--
-- messages.platform: a status of the message carried the send's idempotency key (the platform sent it).
--   Rows of other wamids (a number shared with an agent app) are kept, uncounted, until claimed.
--   Every existing row was counted, so existing rows are platform rows (the daily counts agree with them).
-- messages.wa_id: the WhatsApp id the message went to (learned from the send response or the webhook).
-- recipient (messages and inbound_messages): the match key of the person's WhatsApp number
--   (scrm_common.identity.match_key of the wa_id, else of the phone): Mexico 521… → 52…, Brazil 8-digit
--   mobile → with its 9th digit, Argentina 549… → 54…, other numbers their digits. Replies meet messages
--   by it. Existing rows are backfilled with the same rules applied to their phone.

ALTER TABLE messages ADD COLUMN wa_id text;
ALTER TABLE messages ADD COLUMN recipient text;
ALTER TABLE messages ADD COLUMN platform boolean NOT NULL DEFAULT true;
ALTER TABLE messages ALTER COLUMN platform SET DEFAULT false;

ALTER TABLE inbound_messages ADD COLUMN wa_id text;
ALTER TABLE inbound_messages ADD COLUMN recipient text;
ALTER TABLE inbound_messages ALTER COLUMN phone DROP NOT NULL;

WITH d AS (SELECT tenant, message_key, regexp_replace(phone, '[^0-9]', '', 'g') AS n
           FROM messages WHERE phone IS NOT NULL)
UPDATE messages m SET recipient = CASE
        WHEN d.n ~ '^521[0-9]{10}$' THEN '52' || substr(d.n, 4)
        WHEN d.n ~ '^55[0-9]{2}[6-9][0-9]{7}$' THEN substr(d.n, 1, 4) || '9' || substr(d.n, 5)
        WHEN d.n ~ '^549[0-9]{10}$' THEN '54' || substr(d.n, 4)
        ELSE d.n END
FROM d WHERE m.tenant = d.tenant AND m.message_key = d.message_key;

WITH d AS (SELECT tenant, event_id, regexp_replace(phone, '[^0-9]', '', 'g') AS n FROM inbound_messages)
UPDATE inbound_messages i SET recipient = CASE
        WHEN d.n ~ '^521[0-9]{10}$' THEN '52' || substr(d.n, 4)
        WHEN d.n ~ '^55[0-9]{2}[6-9][0-9]{7}$' THEN substr(d.n, 1, 4) || '9' || substr(d.n, 5)
        WHEN d.n ~ '^549[0-9]{10}$' THEN '54' || substr(d.n, 4)
        ELSE d.n END
FROM d WHERE i.tenant = d.tenant AND i.event_id = d.event_id;

ALTER TABLE inbound_messages ALTER COLUMN recipient SET NOT NULL;

DROP INDEX messages_by_phone;
CREATE INDEX messages_by_recipient ON messages (tenant, recipient, effective_sent_at) WHERE recipient IS NOT NULL;
DROP INDEX inbound_messages_by_phone;
CREATE INDEX inbound_messages_by_recipient ON inbound_messages (tenant, recipient, received_at);
