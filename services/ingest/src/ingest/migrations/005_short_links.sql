-- Issue 9: the short links the deciding services minted (`scrm.links.v1`, R-T6.5, R-R4); ingest answers
-- `GET /l/{code}` from here. A code is unique across tenants (HMAC of tenant, message and slot, 8 base62
-- characters): the public URL names no tenant. Records are applied with ON CONFLICT DO NOTHING, so a
-- redelivered record changes nothing.
CREATE TABLE short_links (
    code text PRIMARY KEY,
    tenant text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('tracked', 'resume')),
    target text NOT NULL,
    flow text NOT NULL,
    campaign text,
    content text,
    medium text NOT NULL DEFAULT 'message',
    idempotency_key text,
    contact jsonb,
    created_at timestamptz NOT NULL,
    expires_at timestamptz
);

-- `GET /r/{token}` finds the resume short link of the token's message (its contact) by tenant and message.
CREATE INDEX short_links_message ON short_links (tenant, idempotency_key, kind) WHERE idempotency_key IS NOT NULL;
