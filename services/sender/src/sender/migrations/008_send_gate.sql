-- Issue 8: one send gate for every queued message, and what it knows about each contact.

-- A message the gate (or a withdrawal) stopped for good is `suppressed`, with the rule that stopped it.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_state_check;
ALTER TABLE messages ADD CONSTRAINT messages_state_check
    CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'suppressed'));
ALTER TABLE messages
    -- The gate rule that last deferred the message (while queued) or suppressed it (R-S4, R-S5, WITHDRAWN …).
    ADD COLUMN rule            text,
    -- The instant the last published `deferred` status named: a pass that defers it to the same instant
    -- again publishes nothing new.
    ADD COLUMN deferred_until  timestamptz,
    -- From the command (R-T1.1): from then on the message is not sent.
    ADD COLUMN expires_at      timestamptz,
    -- When it was suppressed, and when Meta reported it delivered / read (fatigue's read rate, R-T6.3).
    ADD COLUMN suppressed_at   timestamptz,
    ADD COLUMN delivered_at    timestamptz,
    ADD COLUMN read_at         timestamptz;
-- R-S5 counts a contact's marketing sent or in flight in a rolling window, over all flows and accounts.
CREATE INDEX messages_marketing_by_contact ON messages (tenant, contact_key, claimed_at)
    WHERE category = 'marketing' AND claimed_at IS NOT NULL;

-- What the gate knows about a contact, per WhatsApp number (`number`: scrm_common.identity.match_key of
-- the phone / wa_id), from scrm.events.v1 (the sender-evidence group).
CREATE TABLE reachability (
    tenant                  text NOT NULL,
    number                  text NOT NULL,
    -- R-S6: marketing stopped (STOP word, Meta's user_preferences stop, error 131050) and by what.
    opted_out_at            timestamptz,
    opt_out_source          text,
    -- The latest marketing choice's own time: an older stop/resume arriving late changes nothing.
    marketing_changed_at    timestamptz,
    -- The 24 h customer-service window (CLOUD-API §6.1) opens at the last inbound message.
    last_inbound_at         timestamptz,
    -- The contact's IANA zone: their own, else derived from the number's country (zone_derived true).
    timezone                text,
    zone_derived            boolean NOT NULL DEFAULT false,
    locale                  text,
    -- Stated preferences (R-G4, R-S5): max_promotions_per_week / _per_month, preferred_hours, passive.
    preferences             jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- 131049 (Meta's per-user marketing limit): no marketing to the number before this instant.
    marketing_blocked_until timestamptz,
    updated_at              timestamptz NOT NULL,
    PRIMARY KEY (tenant, number)
);

-- Inbound messages per number (kept 35 days): the reply delays of R-T4.5's fatigue score.
CREATE TABLE inbound_log (
    tenant      text NOT NULL,
    number      text NOT NULL,
    received_at timestamptz NOT NULL,
    event_id    text NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX inbound_log_by_number ON inbound_log (tenant, number, received_at);

-- Fatigue pauses (R-T4.5, R-T6.3): that kind of message is not sent to the contact before `until`.
CREATE TABLE fatigue_pauses (
    tenant      text NOT NULL,
    contact_key text NOT NULL,
    rule        text NOT NULL,
    until       timestamptz NOT NULL,
    reason      text NOT NULL,
    paused_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant, contact_key, rule)
);

-- A withdrawal (WithdrawMessage) that arrived before its send command: the command is never queued.
CREATE TABLE withdrawals (
    tenant          text NOT NULL,
    idempotency_key text NOT NULL,
    reason          text NOT NULL,
    withdrawn_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, idempotency_key)
);
