-- A message decided here that later failed is a line of its person's story (outcome 'failed',
-- trigger_engine.outcomes): `status_event` is the event_id of the `message.status` that told it, so a
-- redelivered status records it once. Its person is found through `sends` (primary key tenant +
-- idempotency_key, kept current by merges): no further index needed.
ALTER TABLE decisions ADD COLUMN status_event text;
CREATE UNIQUE INDEX decisions_status_event ON decisions (tenant, status_event) WHERE status_event IS NOT NULL;
