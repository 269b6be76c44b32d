-- R-S7: the sender retries a failed send once after 24 h under the same idempotency key, with a new wamid.
-- A message is one row per idempotency key, whatever wamid each attempt got (reporting.domain.ledger):
--
-- attempt_id    the wamid of the message's latest attempt (NULL when that attempt got none: a final refusal)
-- attempt_at    when the latest attempt had its first status (attempts are ordered by it)
-- attempted_at  the first status of any attempt (the day the message counts as attempted)
-- failed_at     from now on: when the LATEST attempt failed (a failure retried successfully is withdrawn)
-- effective_sent_at  from now on: when the message last went out (its latest attempt), replies are
--               measured from it (Message.reply_from); for a single attempt it is unchanged
--
-- Existing rows were each one attempt: their latest attempt is their wamid, first seen at their
-- earliest status, exactly the day they were counted as attempted, so the daily counts still agree.
-- Rows are found by idempotency key, key, first or latest wamid; one row per idempotency key is
-- enforced. Two rows of one key written before this migration (a late retry counted twice) cannot
-- both keep it: the one with the latest attempt does; the other stays counted as it was and is
-- combined into it when a status of its own wamid arrives again.

ALTER TABLE messages ADD COLUMN attempt_id text;
ALTER TABLE messages ADD COLUMN attempt_at timestamptz;
ALTER TABLE messages ADD COLUMN attempted_at timestamptz;

UPDATE messages SET attempt_id = message_id,
                    attempt_at = LEAST(sent_at, delivered_at, read_at, failed_at),
                    attempted_at = LEAST(sent_at, delivered_at, read_at, failed_at);

WITH ranked AS (
    SELECT tenant, message_key,
           row_number() OVER (PARTITION BY tenant, idempotency_key
                              ORDER BY attempt_at DESC NULLS LAST, message_key) AS n
    FROM messages WHERE idempotency_key IS NOT NULL)
UPDATE messages m SET idempotency_key = NULL
FROM ranked r WHERE m.tenant = r.tenant AND m.message_key = r.message_key AND r.n > 1;

CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (tenant, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX messages_by_message_id ON messages (tenant, message_id) WHERE message_id IS NOT NULL;
CREATE INDEX messages_by_attempt_id ON messages (tenant, attempt_id) WHERE attempt_id IS NOT NULL;
