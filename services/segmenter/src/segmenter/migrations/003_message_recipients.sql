-- Issue 5: statuses are matched by the message, never dropped for their recipient.
--
-- The contact each platform send went to, learned from the sender's own `message.status` events (they
-- carry the send's idempotency key with the number sent to and its wa_id). A later status of the same
-- send whose recipient is missing or unknown (no contact, a BSUID only, an unmappable wa_id) applies to
-- that contact. contact_key follows the person: merges and re-keys of contacts update it.

CREATE TABLE message_recipients (
    tenant          text        NOT NULL,
    idempotency_key text        NOT NULL,
    contact_key     text        NOT NULL,
    learned_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, idempotency_key)
);
CREATE INDEX message_recipients_contact ON message_recipients (tenant, contact_key);
