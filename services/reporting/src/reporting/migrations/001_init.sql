-- reporting: one row per message, inbound messages for reply attribution, distinct paid orders,
-- and the daily aggregates the overview reads (kept current by deltas in the same transaction).

CREATE TABLE inbox (
    tenant       text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- message_key = the wamid, or 'idempotency:<key>' for a send that never reached the provider.
-- *_at = first-seen time of each status as reported; effective_sent_at = sent, or implied by
-- delivered/read (what reply attribution looks at).
CREATE TABLE messages (
    tenant            text        NOT NULL,
    message_key       text        NOT NULL,
    message_id        text,
    idempotency_key   text,
    flow              text,
    account_id        text,
    category          text,
    phone             text,
    sent_at           timestamptz,
    delivered_at      timestamptz,
    read_at           timestamptz,
    failed_at         timestamptz,
    replied_at        timestamptz,
    effective_sent_at timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, message_key)
);
CREATE INDEX messages_by_phone ON messages (tenant, phone, effective_sent_at) WHERE phone IS NOT NULL;

CREATE TABLE inbound_messages (
    tenant      text        NOT NULL,
    event_id    text        NOT NULL,
    phone       text        NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX inbound_messages_by_phone ON inbound_messages (tenant, phone, received_at);

CREATE TABLE orders (
    tenant   text        NOT NULL,
    order_id text        NOT NULL,
    amount   numeric     NOT NULL,
    currency text        NOT NULL,
    paid_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, order_id)
);

-- flow '' = not attributed to a flow.
CREATE TABLE daily_counts (
    tenant text   NOT NULL,
    day    date   NOT NULL,
    flow   text   NOT NULL,
    metric text   NOT NULL,
    value  bigint NOT NULL,
    PRIMARY KEY (tenant, day, flow, metric)
);

CREATE TABLE daily_revenue (
    tenant   text    NOT NULL,
    day      date    NOT NULL,
    flow     text    NOT NULL,
    currency text    NOT NULL,
    amount   numeric NOT NULL,
    PRIMARY KEY (tenant, day, flow, currency)
);
