-- Issue 7: WhatsApp accounts are data managed through /v1/accounts.

-- A phone number id belongs to exactly one tenant. Before, restarting with another bootstrap tenant
-- silently gave the first tenant's number to the new one as well: the earliest row of each number stays,
-- the later copies go, and their queued messages fail with the reason (nothing waits for a number the
-- tenant no longer has).
CREATE TEMPORARY TABLE accounts_dropped ON COMMIT DROP AS
    SELECT a.tenant, a.account_id FROM accounts a
    WHERE EXISTS (SELECT 1 FROM accounts b WHERE b.account_id = a.account_id
                  AND (b.created_at, b.tenant) < (a.created_at, a.tenant));
UPDATE messages m SET state = 'failed', held_by = NULL,
    error_reason = 'account removed: the phone number id belongs to another tenant'
    FROM accounts_dropped d WHERE m.tenant = d.tenant AND m.account_id = d.account_id AND m.state = 'queued';
DELETE FROM account_restrictions r USING accounts_dropped d
    WHERE r.tenant = d.tenant AND r.account_id = d.account_id;
DELETE FROM accounts a USING accounts_dropped d WHERE a.tenant = d.tenant AND a.account_id = d.account_id;
CREATE UNIQUE INDEX accounts_account_id ON accounts (account_id);

ALTER TABLE accounts
    -- The name shown for the number (defaults to the Cloud API's verified name).
    ADD COLUMN display_name    text,
    -- R-S3: "new account" protection counts from here. Rows of earlier releases only know created_at
    -- (the bootstrap backdated it 30 days): an operator corrects it with PATCH /v1/accounts/{id}.
    ADD COLUMN registered_at   timestamptz,
    ADD COLUMN updated_at      timestamptz,
    -- access_token holds a Fernet token (SCRM_SECRETS_KEY) when true; rows of earlier releases hold the
    -- plain token until the sender's next start encrypts them.
    ADD COLUMN token_encrypted boolean NOT NULL DEFAULT false,
    -- When `account.registered` was last written to the outbox; NULL for rows of earlier releases,
    -- announced at the next start so ingest learns which tenant owns each number.
    ADD COLUMN announced_at    timestamptz;
UPDATE accounts SET registered_at = created_at, updated_at = created_at;
ALTER TABLE accounts ALTER COLUMN registered_at SET NOT NULL, ALTER COLUMN registered_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET NOT NULL, ALTER COLUMN updated_at SET DEFAULT now();
