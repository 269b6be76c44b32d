-- Dead letters are stored once per dead-letter id (the consume loop's stable name of the record it gave up
-- on), no longer once per source place: the embedded broker keeps its records in memory, so offsets start
-- at 0 again on every `make run` while these rows stay, and a new record at an old offset was dropped.
-- Older dead letters without an id keep the place-and-service rule. A dead letter too large to keep whole
-- is stored without its value (`truncated`) with the value's size and SHA-256.
ALTER TABLE dead_letters ADD COLUMN dead_letter_id text;
ALTER TABLE dead_letters ADD COLUMN truncated boolean NOT NULL DEFAULT false;
ALTER TABLE dead_letters ADD COLUMN value_size bigint;
ALTER TABLE dead_letters ADD COLUMN value_sha256 text;
DROP INDEX dead_letters_once;
CREATE UNIQUE INDEX dead_letters_once_by_id ON dead_letters (dead_letter_id) WHERE dead_letter_id IS NOT NULL;
CREATE UNIQUE INDEX dead_letters_once_by_place
    ON dead_letters (source_topic, source_partition, source_offset, coalesce(service, ''))
    WHERE dead_letter_id IS NULL;
