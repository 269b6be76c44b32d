-- GET /v1/messages?contact=… finds a customer's messages by its key, the phone sent to or the wa_id answered.
CREATE INDEX messages_contact ON messages (tenant, contact_key, queued_at);
CREATE INDEX messages_to_phone ON messages (tenant, to_phone, queued_at);
CREATE INDEX messages_wa_id ON messages (tenant, wa_id, queued_at) WHERE wa_id IS NOT NULL;
