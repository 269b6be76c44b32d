-- Template and account webhooks name only the WhatsApp Business Account (entry.id), not a phone
-- number id: each number records the WABA it belongs to, so those webhooks reach the owning tenant.
ALTER TABLE whatsapp_numbers ADD COLUMN waba_id text;
CREATE INDEX whatsapp_numbers_waba_id ON whatsapp_numbers (waba_id) WHERE waba_id IS NOT NULL;
