-- The person's stated preferences (issue 8, R-G4, R-S5): what the shop's last contact.created/contact.updated
-- naming `preferences` said (key → JSON scalar, as the event had it). The engine hands them to the send gate with
-- every message, so a limit stated on an event that names no phone still reaches the gate.
-- NULL: never stated (contacts recorded before know none).
ALTER TABLE contacts ADD COLUMN preferences jsonb;

-- A person's reserved sends by flow (issue 8, R-T1): a first purchase withdraws every welcome reserved for the
-- buyer, also those of persons merged into them (their sends were moved to the buyer); a merge moves a person's
-- sends by it too.
CREATE INDEX sends_by_contact ON sends (tenant, contact_key, flow);
