"""Turning a request body into validated events, or into one precise error per bad event."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

# PLATFORM_PRODUCED: facts only the platform itself reports (CONTRACT §2); a shop key posting one
# could rewrite the send log and the reports.
from scrm_common.contracts.events import EVENT_TYPES, PLATFORM_PRODUCED, Event, parse_event

__all__ = ["PLATFORM_PRODUCED", "FieldError", "parse_batch"]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a request was rejected: which event (index), which field, why."""

    index: int | None
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


def _field_path(loc: tuple[int | str, ...]) -> str:
    # pydantic prefixes the union member ("payment.succeeded"); the caller knows the type already.
    parts = [str(p) for p in loc]
    if parts and parts[0] in EVENT_TYPES:
        parts = parts[1:]
    return ".".join(parts) or "(event)"


def _errors_of(index: int | None, exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False):
        field = _field_path(tuple(err["loc"]))
        reason = err["msg"]
        if err["type"] == "union_tag_invalid":
            field, reason = "type", f"unknown event type; expected one of {', '.join(EVENT_TYPES)}"
        elif err["type"] == "union_tag_not_found":
            field, reason = "type", "missing event type"
        out.append(FieldError(index, field, reason))
    return out



# JSON carries both as escapes (`"\\ud800"`, `"\\u0000"`); neither survives the way to a consumer: a lone
# UTF-16 surrogate cannot be encoded as UTF-8 (not even in the 422 naming its field), and PostgreSQL stores
# NUL neither in text nor in jsonb.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNSTORABLE_REASONS = {"\x00": "contains a NUL character (\\u0000), which cannot be stored"}
_SURROGATE_REASON = "contains a lone UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode text"


def _printable(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def unstorable_text(raw: Any) -> tuple[str, str] | None:
    """The first string (value or key) of a decoded JSON value no consumer could store, as (dotted path, reason).

    The path names keys as given, each bad character shown as U+FFFD. None when every string is fine.
    Iterative: the depth of the JSON is bounded only by the body size.
    """
    stack: list[tuple[Any, tuple[str, ...]]] = [(raw, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            found = _UNSTORABLE.search(value)
            if found:
                return ".".join(path) or "(event)", _UNSTORABLE_REASONS.get(found.group(), _SURROGATE_REASON)
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if isinstance(key, str) and (found := _UNSTORABLE.search(key)):
                    reason = _UNSTORABLE_REASONS.get(found.group(), _SURROGATE_REASON)
                    return ".".join((*path, _printable(key))), f"field name {reason}"
                stack.append((item, (*path, str(key))))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(i))) for i, item in reversed(list(enumerate(value))))
    return None


def parse_batch(body: Any, *, max_events: int, refused_types: frozenset[str] = frozenset()
                ) -> tuple[list[Event], list[FieldError]]:
    """Validate a body (one event, or `{"events": [...]}`); any error rejects the whole batch.

    Returns (events, []) or ([], errors): one error per bad event (index, dotted field, reason), or one
    for the envelope (index None). Text no consumer could store (`unstorable_text`) is such an error.
    """
    if isinstance(body, dict) and "events" in body and "type" not in body:
        extra = sorted(set(body) - {"events"})
        if extra:
            return [], [FieldError(None, _printable(extra[0]), "unknown field in batch envelope")]
        raw_events = body["events"]
        if not isinstance(raw_events, list):
            return [], [FieldError(None, "events", "must be a list of events")]
        if not raw_events:
            return [], [FieldError(None, "events", "must hold at least one event")]
        if len(raw_events) > max_events:
            return [], [FieldError(None, "events", f"at most {max_events} events per request")]
        indexed: list[tuple[int | None, Any]] = list(enumerate(raw_events))
    elif isinstance(body, dict):
        indexed = [(0, body)]
    else:
        return [], [FieldError(None, "(body)", "must be a JSON object: an event or {\"events\": [...]}")]
    events: list[Event] = []
    errors: list[FieldError] = []
    for index, raw in indexed:
        if (bad := unstorable_text(raw)) is not None:
            errors.append(FieldError(index, *bad))
            continue
        try:
            event = parse_event(raw)
        except ValidationError as exc:
            errors.extend(_errors_of(index, exc))
            continue
        if event.type in refused_types:
            errors.append(FieldError(index, "type", f"{event.type} is produced by the platform itself, not posted"))
            continue
        events.append(event)
    if errors:
        return [], errors
    return events, []
