-- Issue 7: templates belong to a WhatsApp Business Account (as at Meta), synced from the Cloud API's
-- management endpoint (GET /{waba_id}/message_templates) and kept current by template webhooks (R-S2).
-- A tenant's templates are those of its accounts' WABAs; a send looks its template up by the command's
-- account → its WABA, name and language.
ALTER TABLE templates RENAME TO templates_by_tenant;

CREATE TABLE templates (
    waba_id         text NOT NULL,
    name            text NOT NULL,
    language        text NOT NULL,
    template_id     text,                          -- Meta's id; NULL until the first sync (a seeded template)
    category        text NOT NULL,                 -- utility | marketing | authentication (lower case)
    status          text NOT NULL,                 -- APPROVED, PAUSED, DISABLED, REJECTED, PENDING, DELETED …
    quality         text,                          -- GREEN | YELLOW | RED | UNKNOWN
    components      jsonb NOT NULL DEFAULT '[]',   -- Meta's components: HEADER, BODY, FOOTER, BUTTONS
    parameter_format text NOT NULL DEFAULT 'POSITIONAL',
    rejected_reason text,
    synced_at       timestamptz,                   -- when a sync last saw it listed; NULL: seeded, never synced
    updated_at      timestamptz NOT NULL,          -- when its content or status last changed (sync or webhook)
    PRIMARY KEY (waba_id, name, language)
);
CREATE INDEX templates_unsendable ON templates (waba_id) WHERE status NOT IN ('APPROVED', 'FLAGGED');

-- The catalog each tenant had (statuses included) goes to every WABA of that tenant's accounts.
INSERT INTO templates(waba_id, name, language, category, status, components, updated_at)
SELECT DISTINCT ON (a.waba_id, t.name, t.language) a.waba_id, t.name, t.language, t.category, t.status,
       jsonb_build_array(jsonb_build_object('type', 'BODY', 'text', t.body)), now()
FROM templates_by_tenant t JOIN accounts a ON a.tenant = t.tenant AND a.waba_id IS NOT NULL
ORDER BY a.waba_id, t.name, t.language, t.tenant
ON CONFLICT DO NOTHING;

DROP TABLE templates_by_tenant;

-- A paused template no longer holds its messages (they fail at once, R-S2): release any still waiting.
UPDATE messages SET held_by = NULL, next_attempt_at = now()
WHERE state = 'queued' AND starts_with(held_by, 'template:');
