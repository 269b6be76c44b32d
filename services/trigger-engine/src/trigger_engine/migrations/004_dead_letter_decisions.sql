-- A dead-lettered event is a line of its contact's story (outcome 'dead_lettered', trigger_engine.dead_letters):
-- `dead_letter` names the dead letter (service|topic|partition|offset) so redelivery records it once.
ALTER TABLE decisions ADD COLUMN dead_letter text;
CREATE UNIQUE INDEX decisions_dead_letter ON decisions (tenant, dead_letter) WHERE dead_letter IS NOT NULL;
