-- Which keys came from SCRM_BOOTSTRAP_API_KEY: a start with another value revokes them.
-- Until now the bootstrap was the only way a key was made, so every existing key is one.
ALTER TABLE api_keys ADD COLUMN bootstrap boolean NOT NULL DEFAULT false;
UPDATE api_keys SET bootstrap = true;
