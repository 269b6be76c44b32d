-- The person's stated preferences (issue 8, R-G4, R-S5): what the shop's last contact.created/contact.updated
-- naming `preferences` said (key → JSON scalar, as the event had it). The engine hands them to the send gate with
-- every message, so a limit stated on an event that names no phone still reaches the gate.
-- NULL: never stated (contacts recorded before know none).
ALTER TABLE contacts ADD COLUMN preferences jsonb;
