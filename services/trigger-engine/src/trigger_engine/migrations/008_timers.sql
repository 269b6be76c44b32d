-- Durable timers (issue 8): a flow's `Schedule` decision keeps a timer here in the batch's transaction; the timer
-- loop (trigger_engine.timers) claims due pending ones (FOR UPDATE SKIP LOCKED), lets the flow decide, and settles
-- them in the transaction that writes those decisions. `key` is the flow's (unique per tenant; scheduling it again
-- re-arms it). `event_id` / `event_occurred_at` / `correlation_id` are the triggering event's: what the timer's
-- decisions and commands name as their cause. state: pending → fired | expired | cancelled (`reason` says why).
CREATE TABLE timers (
    tenant            text NOT NULL,
    key               text NOT NULL,
    flow              text NOT NULL,
    contact_key       text NOT NULL,  -- the person (contacts.contact_key)
    event_id          text NOT NULL,
    event_occurred_at timestamptz,
    correlation_id    text,
    due_at            timestamptz NOT NULL,
    expires_at        timestamptz,
    payload           jsonb NOT NULL DEFAULT '{}',
    state             text NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'fired', 'expired', 'cancelled')),
    reason            text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    settled_at        timestamptz,
    PRIMARY KEY (tenant, key)
);
-- The loop's claim: due pending timers, earliest first.
CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
-- Cancels (by key or key prefix) and merges find a person's timers.
CREATE INDEX timers_by_contact ON timers (tenant, contact_key);
