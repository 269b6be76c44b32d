-- Issue 5: error codes by their meaning (R-S7), the WhatsApp identity learned from each send, account restrictions.

-- The send log learns what Meta answered and remembers the one 24 h retry (R-S7).
ALTER TABLE messages
    ADD COLUMN wa_id                   text,     -- contacts[0].wa_id of the send response
    ADD COLUMN provider_message_status text,     -- messages[0].message_status (held_for_quality_assessment …)
    ADD COLUMN late_retry_attempt      integer,  -- attempts when the one 24 h retry was scheduled; NULL = unused
    ADD COLUMN superseded_wamids       text[] NOT NULL DEFAULT '{}',  -- earlier attempts that failed: old news
    ADD COLUMN held_by                 text;     -- the account restriction a queued message waits for

-- An invalid-number mark expires (SCRM_SENDER_INVALID_NUMBER_TTL_DAYS, default 30).
ALTER TABLE invalid_numbers ADD COLUMN expires_at timestamptz;
UPDATE invalid_numbers SET expires_at = marked_at + interval '30 days';
ALTER TABLE invalid_numbers ALTER COLUMN expires_at SET NOT NULL;

-- The business account a phone number belongs to, learned from `account.updated` events naming both.
ALTER TABLE accounts ADD COLUMN waba_id text;

-- Restrictions, disablement and error holds per account; `until` NULL = until lifted.
CREATE TABLE account_restrictions (
    tenant     text NOT NULL,
    account_id text NOT NULL,
    kind       text NOT NULL,
    scope      text NOT NULL CHECK (scope IN ('business_initiated', 'customer_initiated', 'all', 'none')),
    until      timestamptz,
    reason     text NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, account_id, kind)
);
CREATE INDEX messages_held ON messages (tenant, account_id, held_by) WHERE state = 'queued' AND held_by IS NOT NULL;
