-- Flow and tenant settings as data (issue 7), owned by the trigger-engine. `settings` holds what the tenant
-- changed from the defaults (trigger_engine.domain.settings); every change gets the next version and a
-- history row (who: the API key's id) in the same transaction.
CREATE TABLE flow_settings (
    tenant     text NOT NULL,
    flow       text NOT NULL,
    version    bigint NOT NULL,
    settings   jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL,
    PRIMARY KEY (tenant, flow)
);
CREATE TABLE flow_settings_history (
    tenant     text NOT NULL,
    flow       text NOT NULL,
    version    bigint NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    old        jsonb NOT NULL,  -- the effective settings before and after, every field
    new        jsonb NOT NULL,
    PRIMARY KEY (tenant, flow, version)
);
CREATE TABLE tenant_settings (
    tenant     text PRIMARY KEY,
    version    bigint NOT NULL,
    settings   jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    updated_by text NOT NULL
);
CREATE TABLE tenant_settings_history (
    tenant     text NOT NULL,
    version    bigint NOT NULL,
    changed_at timestamptz NOT NULL,
    changed_by text NOT NULL,
    old        jsonb NOT NULL,
    new        jsonb NOT NULL,
    PRIMARY KEY (tenant, version)
);

-- Which WhatsApp accounts each tenant owns, from the sender's account.registered / account.removed events.
-- A removed account keeps its row (removed_at): a tenant that ever had an account is past the bootstrap fallback.
CREATE TABLE tenant_accounts (
    tenant        text NOT NULL,
    account_id    text NOT NULL,
    waba_id       text,
    display_name  text,
    registered_at timestamptz NOT NULL,
    removed_at    timestamptz,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant, account_id)
);

-- One number per tenant that every change of the above raises (row-locked while changing: changes of one
-- tenant's configuration are serialised). Every consumed batch reads it for its tenants in one query and
-- rebuilds its cached configuration only when it moved.
CREATE TABLE config_versions (
    tenant  text PRIMARY KEY,
    version bigint NOT NULL
);
