-- R-R1 "clicked" counts messages, not clicks (reporting.domain.clicks): a message is clicked when any of its
-- links was followed at least once, counted on the UTC day of its first click for its flow.
--
-- One row per clicked message, by the send's idempotency key that `link.clicked` carries; inserted with
-- ON CONFLICT DO NOTHING and counted only when new (a second click of the message changes nothing; an
-- earlier click arriving late moves the row, and its count, to the earlier day).
--
-- clicked_at  the message's first click
-- flow        the flow it counted for: the click's data.flow, else its link's utm_campaign; NULL = none
--
-- Clicks counted before this migration (once per event) stay counted as they were: the events were not kept,
-- so they cannot be told apart by message. Clicks without an idempotency key still count once per event.

CREATE TABLE clicked_messages (
    tenant          text        NOT NULL,
    idempotency_key text        NOT NULL,
    clicked_at      timestamptz NOT NULL,
    flow            text,
    PRIMARY KEY (tenant, idempotency_key)
);
