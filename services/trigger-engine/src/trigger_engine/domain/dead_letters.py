"""A dead-lettered event in its contact's story: which person it was about and the line that tells it.

A dead letter (`scrm.dead-letter.v1`) is the original record plus a `dead_letter` header, JSON
`{"id", "topic", "partition", "offset", "error", "tries", "service", "failure", "at"}`, plus `truncated`
and `value_size` when the record was too large to keep whole (its value left out); `id`, `service`,
`failure` and `at` are absent in older records. Only events (records of `scrm.events.v1`) are
told: an event that no longer passes validation is still read leniently for its tenant, id, type and
contact, so the person's story shows what happened to it. Nothing here raises on a record's content.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scrm_common.contracts import topics
from scrm_common.contracts.dead_letter import HEADER, meta_time, read_meta
from scrm_common.contracts.envelope import PoisonMessage, decode_event
from scrm_common.contracts.events import Contact
from trigger_engine.domain.identity import lookup_aliases

FLOW = "dead_letter"
OUTCOME = "dead_lettered"
# Our own consumer group: its failures have the dead-letter topic as source and are never told.
STORY_GROUP = "trigger-engine-dead-letters"

Header = tuple[str, bytes | None]


@dataclass(frozen=True, slots=True)
class DeadLetterLine:
    """One line of a contact's story: `event_id`'s event was given up on by `service` (see `reason`).

    `mark` names the dead letter — `id:` and the consume loop's dead-letter id, or in older records without
    one its service, source topic, partition and offset: a line is recorded once per mark. (The id keeps
    apart two records at one offset: the memory-only broker starts its offsets at 0 again on every run.)
    """

    tenant: str
    contact: Contact
    event_id: str
    event_type: str
    reason: str
    at: datetime
    mark: str


def _clean(text: str, limit: int) -> str:
    return text.replace("\x00", "\ufffd")[:limit]


def _text(value: Any) -> str | None:
    return _clean(value, 256) if isinstance(value, str) and value else None


def _lenient(key: bytes | None, value: bytes | None, headers: Sequence[Header]
             ) -> tuple[str | None, Contact | None, str | None, str | None]:
    """Tenant, contact, event id and type of a record that is not a valid event, as far as it says them."""
    tenant = None
    for name, raw in headers:
        if name == "tenant" and raw:
            tenant = raw.decode(errors="replace")
            break
    if not tenant and key:
        tenant = key.decode(errors="replace").split(":", 1)[0]
    try:
        raw_event = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return tenant, None, None, None
    if not isinstance(raw_event, dict):
        return tenant, None, None, None
    contact = None
    fields = raw_event.get("contact")
    if isinstance(fields, dict):
        named = {k: _text(fields.get(k)) for k in ("external_id", "phone", "wa_id", "user_id")}
        if any(named.values()):
            contact = Contact.model_construct(external_id=named["external_id"], phone=named["phone"],
                                              wa_id=named["wa_id"], user_id=named["user_id"])
    return tenant, contact, _text(raw_event.get("event_id")), _text(raw_event.get("type"))


def story_line(key: bytes | None, value: bytes | None, headers: Sequence[Header], *,
               received_at: datetime) -> DeadLetterLine | None:
    """The story line of a dead letter; None when it is no event of a tenant and a contact.

    `received_at` (the dead letter's own time) stands in for a missing `at`.
    """
    meta = read_meta(headers)
    if meta.get("topic") != topics.EVENTS:
        return None  # commands, and dead letters of dead-letter consumers (ours included), are no events
    original = [(name, raw) for name, raw in headers if name != HEADER]
    tenant: str | None
    contact: Contact | None
    event_id: str
    event_type: str
    try:
        record = decode_event(key, value, original)  # type: ignore[arg-type]
        tenant, contact = record.tenant, record.event.contact
        event_id, event_type = record.event.event_id, record.event.type
    except (PoisonMessage, RecursionError, ValueError, TypeError):
        tenant, contact, found_id, found_type = _lenient(key, value, original)
        if contact is None and meta.get("truncated") is True:
            contact = _contact_of_key(key)  # the value was left out: the key still names the contact
            found_type = found_type or next((_text(raw.decode(errors="replace")) for name, raw in original
                                             if name == "type" and raw), None)
        event_id, event_type = found_id or "", found_type or "unknown"
    if not tenant or contact is None or not contact.key:
        return None
    service = _text(meta.get("service")) or "a consumer"
    failure = _text(meta.get("failure"))
    tries = meta.get("tries")
    counted = f"{tries} {'try' if tries == 1 else 'tries'}" if isinstance(tries, int) and tries > 0 else None
    how = ", ".join(part for part in (failure, counted) if part)
    error = _clean(str(meta.get("error") or ""), 1800) or "no error recorded"
    if meta.get("truncated") is True:
        size = meta.get("value_size")
        error += f" (record too large to keep whole{f': {size} bytes' if isinstance(size, int) else ''})"
    reason = _clean(f"{service} gave up on it{f' ({how})' if how else ''}: {error}", 2000)
    letter_id = _text(meta.get("id"))
    mark = f"id:{letter_id}" if letter_id else "|".join(str(meta.get(k)) for k in ("service", "topic", "partition",
                                                                                   "offset"))
    return DeadLetterLine(tenant=_clean(tenant, 128), contact=contact, event_id=_clean(event_id, 128),
                          event_type=_clean(event_type, 128), reason=reason,
                          at=meta_time(meta.get("at"), received_at), mark=_clean(mark, 512))


def _contact_of_key(key: bytes | None) -> Contact | None:
    """The contact an event key `<tenant>:<contact key>` names (a `+` key is a phone), or None for keys of
    accounts, templates and messages."""
    _, _, named = (key or b"").decode(errors="replace").partition(":")
    if not named or named.split(":", 1)[0] in ("account", "waba", "wamid"):
        return None
    phone = named.startswith("+")
    return Contact.model_construct(external_id=None if phone else _text(named), phone=_text(named) if phone else None,
                                   wa_id=None, user_id=None)


def person_aliases(contact: Contact) -> tuple[str, ...]:
    """The aliases to find the line's person by (strongest first); a contact read leniently may hold
    values the identity rules cannot use, and then only its plain aliases count."""
    try:
        return lookup_aliases(contact)
    except (ValueError, TypeError, AttributeError):
        plain = [f"ext:{contact.external_id}" if contact.external_id else None,
                 f"uid:{contact.user_id}" if contact.user_id else None,
                 f"tel:{contact.phone}" if contact.phone else None]
        return tuple(alias for alias in plain if alias)
