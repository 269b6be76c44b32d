"""How events travel on `scrm.events.v1`: key `<tenant>:<contact key>`, tenant and timing in headers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scrm_common.contracts import wire
from scrm_common.contracts.events import Event, parse_event

Headers = list[tuple[str, bytes]]


class PoisonMessage(ValueError):
    """A record that can never be processed (bad JSON, schema violation, missing tenant)."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as a consumer sees it: the shop's event plus the tenant and ingest metadata."""

    tenant: str
    event: Event
    ingested_at: datetime | None
    correlation_id: str | None

    @property
    def contact_key(self) -> str:
        """The contact key the event names; for events without a contact, see `subject_key`."""
        return subject_key(self.event)


def subject_key(event: Event) -> str:
    """What an event is about, as a partition key part.

    A contact's key when the event names one; an account or template event's `account:<id>` /
    `waba:<id>`; a price change its product's `sku:<sku>`; a status whose recipient is unknown is keyed by its
    message (`wamid:<id>`).
    """
    contact = event.contact
    if contact is not None:
        return contact.key
    data: Any = event.data
    if event.type == "product.price_changed":
        return f"sku:{data.sku}"
    account = getattr(data, "account_id", None)
    if account:
        return f"account:{account}"
    waba = getattr(data, "waba_id", None)
    if waba:
        return f"waba:{waba}"
    return f"wamid:{getattr(data, 'message_id', None) or event.event_id}"


def event_key(tenant: str, event: Event) -> bytes:
    """Partition key: all of a contact's history lands in one partition, in order."""
    return f"{tenant}:{subject_key(event)}".encode()


def encode_event(
    tenant: str, event: Event, *, ingested_at: datetime | None, correlation_id: str | None = None
) -> tuple[bytes, bytes, Headers]:
    """Key, value and headers for producing an event."""
    headers: Headers = [("tenant", tenant.encode()), ("type", event.type.encode())]
    if ingested_at is not None:
        headers.append(("ingested_at", ingested_at.isoformat().encode()))
    if correlation_id:
        headers.append(("correlation_id", correlation_id.encode()))
    value = event.model_dump_json(exclude_none=True).encode()
    return event_key(tenant, event), value, headers


def header(headers: Headers | None, name: str) -> str | None:
    """The first header called `name`, decoded, or None."""
    for key, value in headers or ():
        if key == name and value is not None:
            return value.decode()
    return None


def decode_event(key: bytes | None, value: bytes | None, headers: Headers | None) -> EventRecord:
    """Parse a record of `scrm.events.v1`; raises PoisonMessage when it can never be processed."""
    try:
        tenant = header(headers, "tenant")
        if not tenant and key:
            tenant = key.decode(errors="replace").split(":", 1)[0]
        raw_ingested = header(headers, "ingested_at")
        ingested_at = datetime.fromisoformat(raw_ingested) if raw_ingested else None
        correlation_id = header(headers, "correlation_id")
        if correlation_id is not None and len(correlation_id) > 128:
            correlation_id = None  # someone else's oversized id is not worth a poisoned event
    except (UnicodeDecodeError, ValueError) as exc:
        raise PoisonMessage(f"unreadable headers: {exc}") from None
    if not tenant:
        raise PoisonMessage("record has no tenant header and no tenant in its key")
    try:  # the rules ingest applies at the door (`wire`: depth, duplicate keys, plain text), then the schema
        event = parse_event(wire.loads_checked(value or b""))
    except (ValueError, TypeError, RecursionError) as exc:
        raise PoisonMessage(f"not a valid event: {exc}") from None
    return EventRecord(tenant, event, ingested_at, correlation_id)


def decode_record(record: Any) -> EventRecord:
    """A consumed record of `scrm.events.v1` (anything with key, value, headers) as an EventRecord."""
    return decode_event(record.key, record.value, record.headers)


def decoder_for(types: frozenset[str]) -> Callable[[Any], EventRecord | None]:
    """A decoder that skips (returns None for) events of other types, before parsing when it can.

    Our producers put the type in a header, so uninteresting records cost no JSON parsing;
    records produced without it are parsed and then filtered.
    """

    def decode(record: Any) -> EventRecord | None:
        try:
            kind = header(record.headers, "type")
        except UnicodeDecodeError:
            kind = None
        if kind is not None and kind not in types:
            return None
        decoded = decode_event(record.key, record.value, record.headers)
        return decoded if decoded.event.type in types else None

    return decode
