-- Issue 8 item 4: the send gate's outcomes (message.status `deferred` / `suppressed`, with the rule) counted
-- per flow and rule (reporting.domain.gate).
--
-- messages.deferrals       JSON object rule → first time that rule deferred the message (ISO 8601 UTC),
--                          NULL when never deferred; written and read only by reporting.adapters.db
-- messages.gate_state      the gate outcome standing for the message: 'deferred' (the latest deferral) or
--                          'suppressed' (final: the earliest suppression), NULL when the gate never held it back
-- messages.gate_rule       that outcome's rule (R-S4, R-S5, R-S6, R-S7, WINDOW, EXPIRED, WITHDRAWN, META-131049,
--                          R-T4.5, R-T6.3 …)
-- messages.gate_at         when that outcome was decided
-- messages.deferred_until  for a deferral: the earliest instant it may go
--
-- Existing rows had no gate status (reporting could not read one before), so NULL is right for them.

ALTER TABLE messages ADD COLUMN deferrals text;
ALTER TABLE messages ADD COLUMN gate_state text;
ALTER TABLE messages ADD COLUMN gate_rule text;
ALTER TABLE messages ADD COLUMN gate_at timestamptz;
ALTER TABLE messages ADD COLUMN deferred_until timestamptz;

-- metric: deferred | deferred_then_sent | deferred_then_suppressed | suppressed, on the UTC day of the
-- deferral or suppression; flow '' = not attributed to a flow; rule '' = the flow's total (each message once).
CREATE TABLE gate_counts (
    tenant text   NOT NULL,
    day    date   NOT NULL,
    flow   text   NOT NULL,
    rule   text   NOT NULL,
    metric text   NOT NULL,
    value  bigint NOT NULL,
    PRIMARY KEY (tenant, day, flow, rule, metric)
);
