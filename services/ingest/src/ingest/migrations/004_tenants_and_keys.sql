-- Issue 7: tenants and keys are data, managed through ingest's API.

-- A tenant has a display name and may be disabled (its keys stop working, its webhooks are dropped);
-- its status is derived: disabled while disabled_at is set.
ALTER TABLE tenants ADD COLUMN name text;
ALTER TABLE tenants ADD COLUMN disabled_at timestamptz;

-- Keys get a public id (what lists show and DELETE names), the first characters of the key (to recognise
-- it), a role instead of the read_only flag, a label and when they were last used. The key itself is
-- still stored only as its SHA-256 (key_hash); keys made before this migration have no prefix.
ALTER TABLE api_keys ADD COLUMN id text;
UPDATE api_keys SET id = 'key_' || substr(md5(random()::text || key_hash), 1, 12);
ALTER TABLE api_keys ALTER COLUMN id SET NOT NULL;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_id_unique UNIQUE (id);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_id_shape CHECK (id ~ '^key_[0-9a-f]{12}$');

ALTER TABLE api_keys ADD COLUMN prefix text;

ALTER TABLE api_keys ADD COLUMN role text NOT NULL DEFAULT 'admin';
UPDATE api_keys SET role = CASE WHEN read_only THEN 'read' ELSE 'admin' END;
ALTER TABLE api_keys ALTER COLUMN role DROP DEFAULT;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_role CHECK (role IN ('events', 'read', 'admin'));
ALTER TABLE api_keys DROP COLUMN read_only;

ALTER TABLE api_keys ADD COLUMN label text;
ALTER TABLE api_keys ADD COLUMN last_used_at timestamptz;
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- The phone number -> tenant projection is now learnt from the sender's account.registered/removed events.
-- changed_at: when the event last applied to the number happened (older events arriving later, from
-- another tenant's partition, change nothing); removed_at: the number was given up (a tombstone, so a
-- late registration older than the removal cannot bring it back). Rows seeded by the bootstrap have
-- no changed_at: any account event overrides them.
ALTER TABLE whatsapp_numbers ADD COLUMN changed_at timestamptz;
ALTER TABLE whatsapp_numbers ADD COLUMN removed_at timestamptz;
