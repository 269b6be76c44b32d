"""Kafka topic names (`scrm.<what>.v<n>`)."""

EVENTS = "scrm.events.v1"
SEND_COMMANDS = "scrm.send-commands.v1"
DEAD_LETTER = "scrm.dead-letter.v1"
# Short links the deciding services minted (`contracts.links.ShortLink`); ingest keeps them and answers `GET /l/{code}`.
LINKS = "scrm.links.v1"

ALL = (EVENTS, SEND_COMMANDS, DEAD_LETTER, LINKS)
