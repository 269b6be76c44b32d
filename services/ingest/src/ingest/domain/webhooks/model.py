"""What reading a webhook yields: events with their routing ids, and every item not turned into one, with why."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scrm_common.contracts import wire
from scrm_common.contracts.events import Event, parse_event

# Reasons an item is not turned into an event: the `reason` label of scrm_ingest_webhook_skipped_total.
ECHO = "echo"  # our own outbound message echoed back (smb_message_echoes, or `from` is the business number)
CALL = "call"  # a voice call (`calls` field): not a message
EDIT = "edit"  # the customer edited a message already received
REVOKE = "revoke"  # the customer deleted a message already received
GROUP = "group"  # a group message or a status of a group message
PLAYED = "played"  # a voice message was played: not a tracked status
REQUEST_WELCOME = "request_welcome"  # the user opened the chat for the first time; nothing was written
IDENTITY_CHANGED = "identity_changed"  # `system` user_identity_changed: a security notice, no new number
VALUE_ERRORS = "value_errors"  # `value.errors[]`: a system/app/account error with no message attached
UNKNOWN_FIELD = "unknown_field"  # a webhook field this service does not read
UNKNOWN_TYPE = "unknown_type"  # a message, system or preference type this service does not know
UNKNOWN_STATUS = "unknown_status"  # a status other than sent/delivered/read/failed/played
UNKNOWN_OBJECT = "unknown_object"  # `object` is not whatsapp_business_account
NO_SENDER = "no_sender"  # an inbound message or preference naming neither `wa_id`/`from` nor a user id
MALFORMED = "malformed"  # an item of an unexpected shape (not an object, missing id, wrong types)
UNKNOWN_NUMBER = "unknown_number"  # no tenant owns the metadata.phone_number_id
UNKNOWN_ACCOUNT = "unknown_account"  # no tenant owns the WhatsApp Business Account id (entry.id)

# Reasons an event was produced from a repaired item: the `reason` label of scrm_ingest_webhook_repaired_total.
BAD_TIMESTAMP = "bad_timestamp"  # unreadable timestamp: the time the webhook was received is used instead
BAD_TEXT = "bad_text"  # a control character or lone UTF-16 surrogate in a string was replaced by U+FFFD

# Characters no consumer accepts (the plain-text rule of the event contract, `wire`): control characters
# other than tab, LF and CR (PostgreSQL stores no NUL; the others are invisible wherever text is shown)
# and lone UTF-16 surrogates (not encodable as UTF-8: publishing the event or scraping a metric label
# would fail). JSON carries them as escapes (`"\\u0000"`, `"\\ud83e"`).
UNSTORABLE = wire.NOT_PLAIN


def clean(value: str) -> str:
    """`value` with each control character and lone surrogate replaced by U+FFFD."""
    return wire.printable(value)


@dataclass(frozen=True, slots=True)
class Skipped:
    """One webhook item not turned into an event (or, in `Translated.repaired`, repaired on the way).

    `field` is the webhook field (`messages`, `account_update` …, "" above the changes), `type` the
    item's kind (a message type, a status, `error`, `entry` …), `reason` one of the constants above,
    `error_codes` Meta's codes carried by the item, `detail` a short human hint (an id, a type name).
    """

    field: str
    type: str
    reason: str
    error_codes: tuple[int, ...] = ()
    detail: str | None = None

    def as_log(self) -> dict[str, Any]:
        """The fields of the JSON log line (logging `extra=`)."""
        return {"field": self.field, "type": self.type, "reason": self.reason,
                "error_codes": list(self.error_codes), "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Routed:
    """An event and what routes it to a tenant: the receiving phone number id, else the WABA id."""

    event: Event
    phone_number_id: str | None
    waba_id: str | None
    field: str
    type: str


@dataclass(frozen=True, slots=True)
class Translated:
    """Everything one webhook said: events to route, items skipped with reason, repairs made."""

    events: list[Routed]
    skipped: list[Skipped]
    repaired: list[Skipped]


@dataclass(slots=True)
class Findings:
    """Collects a webhook's events, skips and repairs while the parsers walk it."""

    now: datetime
    events: list[Routed] = dataclasses.field(default_factory=list)
    skipped: list[Skipped] = dataclasses.field(default_factory=list)
    repaired: list[Skipped] = dataclasses.field(default_factory=list)

    def skip(self, field: str, type: str, reason: str, *, error_codes: tuple[int, ...] = (),
             detail: str | None = None) -> None:
        """Record an item not turned into an event; `field` and `type` are cleaned (they become metric labels)."""
        self.skipped.append(Skipped(clean(field), clean(type), reason, error_codes, detail))

    def emit(self, event: Event, *, field: str, type: str, phone_number_id: str | None, waba_id: str | None,
             repairs: Iterable[str] = (), detail: str | None = None) -> None:
        """Record an event, and the repairs its item needed (each reason once).

        Raises pydantic's ValidationError or PydanticSerializationError (both ValueError) when the event
        would not survive the broker — it cannot be encoded as JSON, or a consumer's `parse_event` would
        refuse what it reads back. The parsers run under `change.guarded`, which then counts the item as
        malformed: a webhook must never become a 5xx at publish time, nor a dead letter at a consumer.
        """
        parse_event(json.loads(event.model_dump_json(exclude_none=True)))
        field, type = clean(field), clean(type)
        self.events.append(Routed(event, phone_number_id or None, waba_id or None, field, type))
        for reason in dict.fromkeys(repairs):
            self.repaired.append(Skipped(field, type, reason, (), detail))

    def translated(self) -> Translated:
        """What was found: the events (in payload order), the skipped and the repaired items."""
        return Translated(self.events, self.skipped, self.repaired)
