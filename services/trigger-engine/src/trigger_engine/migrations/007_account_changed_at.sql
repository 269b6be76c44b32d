-- The accounts projection applies account.registered / account.removed in the order they happened, not in the
-- order they arrive (two sender relays may publish them out of order): `changed_at` is the occurred_at of the
-- last event applied to the row, and an event older than it changes nothing. A removal keeps its row (a
-- tombstone), so a late registration older than the removal cannot bring the account back.
-- NULL (rows written before this migration): the next event applies whatever its time.
ALTER TABLE tenant_accounts ADD COLUMN changed_at timestamptz;
