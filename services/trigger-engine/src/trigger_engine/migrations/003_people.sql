-- One contact per person (issue 5): a person is one per tenant and WhatsApp number, and every identity
-- an event may name is an alias of the person's key (trigger_engine.domain.identity):
-- 'ext:<external id>', 'uid:<BSUID>', 'wa:<wa_id>', 'tel:<E.164>', 'mk:<match key of a number>'.
CREATE TABLE contact_aliases (
    tenant     text NOT NULL,
    alias      text NOT NULL,
    person     text NOT NULL,  -- contacts.contact_key of the person
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, alias)
);
CREATE INDEX contact_aliases_by_person ON contact_aliases (tenant, person);

-- The number as WhatsApp gives it, the WhatsApp profile name (apart from the shop's name), and the
-- customer's own marketing choice in WhatsApp (stop / resume / signup) with when it was made.
ALTER TABLE contacts
    ADD COLUMN wa_id text,
    ADD COLUMN profile_name text,
    ADD COLUMN marketing text,
    ADD COLUMN marketing_changed_at timestamptz;

-- Contacts recorded before are persons known by their key and their phone.
INSERT INTO contact_aliases (tenant, alias, person)
SELECT tenant, CASE WHEN contact_key ~ '^[+][0-9]+$' THEN 'tel:' ELSE 'ext:' END || contact_key, contact_key
FROM contacts
ON CONFLICT DO NOTHING;
INSERT INTO contact_aliases (tenant, alias, person)
SELECT tenant, 'tel:' || phone, contact_key FROM contacts WHERE phone IS NOT NULL
ON CONFLICT DO NOTHING;
