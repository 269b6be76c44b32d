-- The inbox has one name in every service (scrm_common.db.inbox).
ALTER TABLE processed_events RENAME TO inbox;
CREATE INDEX inbox_processed_at ON inbox (processed_at);
