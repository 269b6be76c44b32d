-- Issue 7 (review): the bootstrap account takes SCRM_BOOTSTRAP_ACCESS_TOKEN / SCRM_BOOTSTRAP_WABA_ID only when
-- the ENVIRONMENT's value changed since it was last applied, so a token or WABA set through
-- PATCH /v1/accounts survives restarts. What was last applied from the environment, per account:
-- the sha256 (hex) of the token — never the token — and the WABA id. NULL: never applied (an account added
-- through the API), or a row of an earlier release (its next bootstrap applies the environment once, as
-- every start did before).
ALTER TABLE accounts ADD COLUMN bootstrap_token_sha256 text;
ALTER TABLE accounts ADD COLUMN bootstrap_waba_id text;
