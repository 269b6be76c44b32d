-- WhatsApp accounts (phone number ids) of each tenant, their policy and their pacing state.
CREATE TABLE accounts (
    tenant                 text NOT NULL,
    account_id             text NOT NULL,
    access_token           text NOT NULL,
    marketing_min_interval_s double precision NOT NULL DEFAULT 3,
    marketing_max_interval_s double precision NOT NULL DEFAULT 5,
    marketing_per_hour     integer NOT NULL DEFAULT 200,
    new_account_per_day    integer NOT NULL DEFAULT 50,
    new_account_days       integer NOT NULL DEFAULT 3,
    throughput_per_second  double precision NOT NULL DEFAULT 80,
    created_at             timestamptz NOT NULL DEFAULT now(),
    next_marketing_at      timestamptz,
    utility_tokens         double precision NOT NULL DEFAULT 0,
    tokens_at              timestamptz,
    PRIMARY KEY (tenant, account_id)
);

CREATE TABLE templates (
    tenant    text NOT NULL,
    name      text NOT NULL,
    language  text NOT NULL,
    category  text NOT NULL,
    body      text NOT NULL,
    status    text NOT NULL DEFAULT 'APPROVED',
    PRIMARY KEY (tenant, name, language)
);

-- The send log (R-S8): one row per idempotency key; "sending" is recorded before the provider call.
CREATE TABLE messages (
    tenant            text NOT NULL,
    idempotency_key   text NOT NULL,
    account_id        text NOT NULL,
    flow              text NOT NULL,
    category          text NOT NULL,
    contact_key       text NOT NULL,
    to_phone          text NOT NULL,
    command           jsonb NOT NULL,
    state             text NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed')),
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL,
    claimed_at        timestamptz,
    wamid             text,
    error_code        integer,
    error_reason      text,
    queued_at         timestamptz NOT NULL,
    sent_at           timestamptz,
    event_ingested_at timestamptz,
    PRIMARY KEY (tenant, idempotency_key)
);
CREATE INDEX messages_due ON messages (tenant, account_id, next_attempt_at) WHERE state = 'queued';
CREATE INDEX messages_sending ON messages (claimed_at) WHERE state = 'sending';
CREATE INDEX messages_marketing_recent ON messages (tenant, account_id, claimed_at) WHERE category = 'marketing';

-- R-S7: numbers that failed as invalid are left out of later sends.
CREATE TABLE invalid_numbers (
    tenant     text NOT NULL,
    phone      text NOT NULL,
    error_code integer,
    marked_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, phone)
);

CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        bytea NOT NULL,
    value      bytea NOT NULL,
    headers    jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
