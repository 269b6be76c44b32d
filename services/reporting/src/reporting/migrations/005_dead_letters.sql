-- Dead letters of every service (read from scrm.dead-letter.v1), kept so operators can see and replay them
-- (reporting.dead_letters). Stored once per source record and service that gave up on it.

CREATE TABLE dead_letters (
    id               bigserial   PRIMARY KEY,
    service          text,                 -- the consumer group that gave up; absent in records before issue 6
    failure          text,                 -- deterministic | exhausted; absent before issue 6
    error            text        NOT NULL,
    tries            integer,
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    record_key       bytea,
    record_headers   json        NOT NULL, -- [[name, base64 value | null], …] without `dead_letter`, in order
    record_value     bytea,
    tenant           text,                 -- the original record's; NULL: visible to no tenant key
    event_id         text,
    event_type       text,
    contact_key      text,
    dead_lettered_at timestamptz NOT NULL,
    dl_partition     integer     NOT NULL, -- where the dead letter lies in scrm.dead-letter.v1
    dl_offset        bigint      NOT NULL,
    stored_at        timestamptz NOT NULL DEFAULT now(),
    replayed_at      timestamptz,
    replay_count     integer     NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX dead_letters_once
    ON dead_letters (source_topic, source_partition, source_offset, coalesce(service, ''));
CREATE INDEX dead_letters_by_tenant ON dead_letters (tenant, id DESC);
