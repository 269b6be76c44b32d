"""Kafka topic names (`scrm.<what>.v<n>`)."""

EVENTS = "scrm.events.v1"
SEND_COMMANDS = "scrm.send-commands.v1"
DEAD_LETTER = "scrm.dead-letter.v1"

ALL = (EVENTS, SEND_COMMANDS, DEAD_LETTER)
