CREATE TABLE tenants (
    tenant      text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_hash    text PRIMARY KEY,
    tenant      text NOT NULL REFERENCES tenants(tenant),
    read_only   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Which tenant a WhatsApp phone number id belongs to: routes Meta's webhooks.
CREATE TABLE whatsapp_numbers (
    phone_number_id text PRIMARY KEY,
    tenant          text NOT NULL REFERENCES tenants(tenant)
);
