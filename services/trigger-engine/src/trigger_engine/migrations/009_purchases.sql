-- What a person's welcome needs to know (issue 8, R-T1): when the person was created (the earliest
-- contact.created of any of their identities) and their first purchase (the earliest payment.succeeded: its
-- occurred_at and event_id) — a first purchase withdraws a welcome that may still be waiting.
-- NULL (contacts recorded before): not known; such a person's purchase withdraws nothing.
ALTER TABLE contacts
    ADD COLUMN created_at timestamptz,
    ADD COLUMN first_purchase_at timestamptz,
    ADD COLUMN first_purchase_event text;
