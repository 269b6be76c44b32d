-- Issue 5: one contact per person per tenant, found by any of its aliases; per-tenant currency settings.
--
-- contact_aliases replaces contact_phones. An alias is one identity of the person (segmenter/domain/aliases.py):
--   ext:<external id>, phone:<E.164>, wa:<wa_id digits>, user:<BSUID>, match:<match key digits>.
-- Existing contacts keep their keys; their phones, external ids and the phones' match keys become aliases.
-- The match key (scrm_common.identity.match_key): Mexico 521 + 10 digits → 52 + 10; Brazil 55 DD + 8-digit
-- mobile (6–9) → with its 9th digit; Argentina 549 + 10 → 54 + 10; other numbers their digits.

CREATE TABLE contact_aliases (
    tenant      text NOT NULL,
    alias       text NOT NULL,
    contact_key text NOT NULL,
    PRIMARY KEY (tenant, alias)
);
CREATE INDEX contact_aliases_owner ON contact_aliases (tenant, contact_key);

INSERT INTO contact_aliases (tenant, alias, contact_key)
SELECT tenant, 'phone:' || phone, contact_key FROM contact_phones;

INSERT INTO contact_aliases (tenant, alias, contact_key)
SELECT tenant, 'ext:' || external_id, contact_key FROM contacts WHERE external_id IS NOT NULL
ON CONFLICT DO NOTHING;

WITH d AS (SELECT tenant, contact_key, regexp_replace(phone, '[^0-9]', '', 'g') AS n FROM contact_phones)
INSERT INTO contact_aliases (tenant, alias, contact_key)
SELECT tenant, 'match:' || CASE
        WHEN n ~ '^521[0-9]{10}$' THEN '52' || substr(n, 4)
        WHEN n ~ '^55[0-9]{2}[6-9][0-9]{7}$' THEN substr(n, 1, 4) || '9' || substr(n, 5)
        WHEN n ~ '^549[0-9]{10}$' THEN '54' || substr(n, 4)
        ELSE n END, contact_key
FROM d
ORDER BY tenant, contact_key
ON CONFLICT DO NOTHING;

DROP TABLE contact_phones;

ALTER TABLE contacts ADD COLUMN wa_id text;

-- A tenant's base currency and FX rates (R-G5): rates = {"<ISO 4217>": "<units of base per unit>"}
-- valid as of `as_of`. Tenants without a row use the installation's defaults (segmenter Settings).
CREATE TABLE currency_settings (
    tenant        text        PRIMARY KEY,
    base_currency text        NOT NULL,
    rates         jsonb       NOT NULL DEFAULT '{}',
    as_of         date,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
