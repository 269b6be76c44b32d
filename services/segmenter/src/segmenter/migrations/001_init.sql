-- segmenter: contact features and tags, the phone directory joining both identities, the inbox.

CREATE TABLE inbox (
    tenant       text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- One row per contact, keyed by external id (or by phone while only the phone is known).
-- `features` is the domain's ContactFeatures as JSON; the columns after it are derived from it at
-- `computed_at` and kept for audiences; `refresh_at` is when time alone changes them (R-G10).
CREATE TABLE contacts (
    tenant        text        NOT NULL,
    contact_key   text        NOT NULL,
    external_id   text,
    phone         text,
    features      jsonb       NOT NULL,
    activity_tier text        NOT NULL,
    value_tier    text,
    tags          text[]      NOT NULL DEFAULT '{}',
    last_event_at timestamptz,
    computed_at   timestamptz NOT NULL,
    refresh_at    timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, contact_key)
);
CREATE INDEX contacts_refresh_at ON contacts (refresh_at) WHERE refresh_at IS NOT NULL;
CREATE INDEX contacts_activity ON contacts (tenant, activity_tier);
CREATE INDEX contacts_tags ON contacts USING gin (tags);

-- Which contact owns a phone number: webhook events name contacts by phone only.
CREATE TABLE contact_phones (
    tenant      text NOT NULL,
    phone       text NOT NULL,
    contact_key text NOT NULL,
    PRIMARY KEY (tenant, phone)
);
CREATE INDEX contact_phones_owner ON contact_phones (tenant, contact_key);
