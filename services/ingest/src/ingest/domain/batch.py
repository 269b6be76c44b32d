"""Turning a request body into validated events, or into one precise error per bad event."""

from __future__ import annotations

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



def parse_batch(body: Any, *, max_events: int, refused_types: frozenset[str] = frozenset()
                ) -> tuple[list[Event], list[FieldError]]:
    """Validate a body (one event, or `{"events": [...]}`); any error rejects the whole batch."""
    if isinstance(body, dict) and "events" in body and "type" not in body:
        extra = sorted(set(body) - {"events"})
        if extra:
            return [], [FieldError(None, extra[0], "unknown field in batch envelope")]
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
