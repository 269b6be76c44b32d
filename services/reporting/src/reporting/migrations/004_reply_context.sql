-- A reply that names the message it answers (WhatsApp's context.id: a quoted reply, a button press, a
-- reaction) credits that message, not merely the latest one sent within 24 h (reporting.domain.messages).
-- Inbound messages stored before keep no context and are attributed by the latest-message rule, as they were.

ALTER TABLE inbound_messages ADD COLUMN context_message_id text;
CREATE INDEX inbound_messages_by_context ON inbound_messages (tenant, context_message_id)
    WHERE context_message_id IS NOT NULL;
