-- Inbox: an event applied once per tenant + event_id, whenever it comes again.
CREATE TABLE processed_events (
    tenant       text NOT NULL,
    event_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);

-- What flows need to know about a contact (the engine's own copy, built from events).
CREATE TABLE contacts (
    tenant      text NOT NULL,
    contact_key text NOT NULL,
    phone       text,
    name        text,
    locale      text,
    timezone    text,
    opted_in    boolean,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, contact_key)
);

-- One row per message ever decided: the unique key that makes "exactly one per order" hold.
CREATE TABLE sends (
    tenant          text NOT NULL,
    idempotency_key text NOT NULL,
    flow            text NOT NULL,
    contact_key     text NOT NULL,
    event_id        text NOT NULL,
    decided_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant, idempotency_key)
);

-- Every decision with its reason, including the ones that sent nothing.
CREATE TABLE decisions (
    id              bigserial PRIMARY KEY,
    tenant          text NOT NULL,
    event_id        text NOT NULL,
    event_type      text NOT NULL,
    contact_key     text NOT NULL,
    flow            text NOT NULL,
    outcome         text NOT NULL,
    reason          text,
    idempotency_key text,
    decided_at      timestamptz NOT NULL
);
CREATE INDEX decisions_by_contact ON decisions (tenant, contact_key, id);

-- Transactional outbox: commands written with the decision, relayed to Kafka afterwards.
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        bytea NOT NULL,
    value      bytea NOT NULL,
    headers    jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
