"""Dead letters as operators see them: what a record of `scrm.dead-letter.v1` says, and how it is replayed.

A dead letter is the original record (key, value, headers) plus a `dead_letter` header, JSON
`{"id", "topic", "partition", "offset", "error", "tries", "service", "failure", "at"}` written by the
consume loop (`scrm_common.kafka.consumer`), plus `truncated`, `value_size` and `value_sha256` when the
record was too large to keep whole (its value is then left out). `id` names the dead letter for good
(stored once per id); `id`, `service`, `failure` and `at` are absent in older records, which are stored once
per source place and service instead. Every key is read defensively. Nothing here may raise on a record's
content: a dead letter is stored whatever it holds, or it could never be seen.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from scrm_common.contracts import topics
from scrm_common.contracts.dead_letter import HEADER, meta_time, read_meta
from scrm_common.contracts.envelope import PoisonMessage, decode_event

DEAD_LETTER_HEADER = HEADER
# The consumer group that stores dead letters in reporting: its own failures are not read back (no loop).
STORE_GROUP = "reporting-dead-letters"
MAX_JSON_DEPTH = 64  # deeper values are shown as base64: nobody reads them nested further, and it keeps answers safe

Header = tuple[str, bytes | None]


class AlreadyReplayed(Exception):
    """The dead letter was replayed before and the caller did not ask to force it."""


class NotReplayable(Exception):
    """The dead letter cannot be republished (it came from the dead-letter topic itself, or its value was
    not kept)."""


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    """A dead letter read from the topic, ready to store (text fields hold no NUL: PostgreSQL refuses it)."""

    service: str | None
    failure: str | None
    error: str
    tries: int | None
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    headers: tuple[Header, ...]  # the original record's, without `dead_letter`, in order
    value: bytes | None
    tenant: str | None
    event_id: str | None
    event_type: str | None
    contact_key: str | None
    dead_lettered_at: datetime
    dl_partition: int
    dl_offset: int
    dead_letter_id: str | None = None  # the consume loop's stable name of it; None in older records
    truncated: bool = False  # the value was left out (too large for the dead-letter topic)
    value_size: int | None = None  # the original value's size in bytes, when truncated
    value_sha256: str | None = None  # and its SHA-256 (hex)


def clean(text: str | None, limit: int = 2000) -> str | None:
    """`text` without NUL characters (which PostgreSQL's text refuses), at most `limit` characters."""
    if text is None:
        return None
    return text.replace("\x00", "\ufffd")[:limit]


def _text(value: Any) -> str | None:
    return clean(value) if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _header(headers: Sequence[Header], name: str) -> str | None:
    for key, raw in headers:
        if key == name and raw is not None:
            try:
                return raw.decode()
            except UnicodeDecodeError:
                return None
    return None


def is_own_failure(headers: Sequence[Header]) -> bool:
    """True for a dead letter that the store's own consumer wrote (reading it back would loop forever)."""
    meta = read_meta(headers)
    return meta.get("topic") == topics.DEAD_LETTER and meta.get("service") in (STORE_GROUP, None)


def read_dead_letter(key: bytes | None, value: bytes | None, headers: Sequence[Header], *, dl_partition: int,
                     dl_offset: int, received_at: datetime) -> NewDeadLetter:
    """What a dead-letter record says; `received_at` stands in for a missing `at` (older records)."""
    meta = read_meta(headers)
    original = tuple((name, raw) for name, raw in headers if name != DEAD_LETTER_HEADER)
    tenant = _header(original, "tenant")
    event_id: str | None = None
    event_type: str | None = None
    contact_key: str | None = None
    try:
        record = decode_event(key, value, list(original))  # type: ignore[arg-type]
    except (PoisonMessage, RecursionError, ValueError, TypeError):
        record = None
    if record is not None:
        tenant = tenant or record.tenant
        event_id, event_type, contact_key = record.event.event_id, record.event.type, record.contact_key or None
    else:  # not an event we can parse: still say what it claims to be, when it says so
        raw = _json(value)
        if isinstance(raw, dict):
            event_id, event_type = _text(raw.get("event_id")), _text(raw.get("type"))
            contact = raw.get("contact")
            if isinstance(contact, dict):
                contact_key = next((c for c in (_text(contact.get(k)) for k in ("external_id", "phone", "wa_id",
                                                                                 "user_id")) if c), None)
        event_type = event_type or _header(original, "type")
    truncated = meta.get("truncated") is True
    source = (_text(meta.get("topic")), _int(meta.get("partition")), _int(meta.get("offset")))
    if None in source:  # not where it came from: where it lies in the dead-letter topic keeps it apart
        source = ("unknown", dl_partition, dl_offset)
    return NewDeadLetter(
        service=_text(meta.get("service")), failure=_text(meta.get("failure")),
        error=clean(str(meta.get("error") or "no error recorded")) or "", tries=_int(meta.get("tries")),
        source_topic=str(source[0]), source_partition=int(source[1] or 0), source_offset=int(source[2] or 0),
        key=key, headers=original, value=None if truncated else value, tenant=clean(tenant, 128),
        event_id=clean(event_id, 128),
        event_type=clean(event_type, 128), contact_key=clean(contact_key, 256),
        dead_lettered_at=meta_time(meta.get("at"), received_at), dl_partition=dl_partition, dl_offset=dl_offset,
        dead_letter_id=clean(_text(meta.get("id")), 128), truncated=truncated,
        value_size=_int(meta.get("value_size")) if truncated else None,
        value_sha256=clean(_text(meta.get("value_sha256")), 128) if truncated else None)


def _json(raw: bytes | None) -> Any:
    """`raw` parsed as strict JSON (no NaN/Infinity), or None when it is not JSON."""
    if not raw:
        return None

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        return json.loads(raw, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


Encoding = Literal["json", "utf-8", "base64", "none"]


def show_bytes(raw: bytes | None, *, as_json: bool) -> tuple[Encoding, Any]:
    """How to show bytes in an answer: JSON when they parse (values only), else UTF-8 text, else base64."""
    if raw is None:
        return "none", None
    if as_json:
        parsed = _json(raw)
        if parsed is not None and _depth(parsed) <= MAX_JSON_DEPTH:
            return "json", parsed
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return "base64", base64.b64encode(raw).decode()
    if "\x00" in text:
        return "base64", base64.b64encode(raw).decode()
    return "utf-8", text


def check_replay(*, replayed_at: datetime | None, source_topic: str, force: bool, truncated: bool = False) -> None:
    """Raise AlreadyReplayed (unless `force`) or NotReplayable when a dead letter may not be replayed now.

    A truncated dead letter is not replayable, forced or not: its value was not kept, and republishing
    the rest would be a different record.
    """
    if source_topic == topics.DEAD_LETTER or source_topic not in topics.ALL:
        raise NotReplayable(f"records of {source_topic!r} are not replayed")
    if truncated:
        raise NotReplayable("the record was too large to keep whole: its value was left out of the dead letter "
                            "(see value_size and value_sha256), so it cannot be republished")
    if replayed_at is not None and not force:
        raise AlreadyReplayed(f"replayed at {replayed_at.isoformat()}; pass force=true to replay it again")


def replay_headers(headers: Sequence[Header]) -> list[Header]:
    """The headers a replay republishes: the original record's, without any `dead_letter`."""
    return [(name, raw) for name, raw in headers if name != DEAD_LETTER_HEADER]
