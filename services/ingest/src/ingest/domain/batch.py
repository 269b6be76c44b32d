"""Turning a request body into validated events, or into one precise error per bad event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from scrm_common.contracts import wire

# PLATFORM_PRODUCED: facts only the platform itself reports (CONTRACT §2); a shop key posting one
# could rewrite the send log and the reports.
from scrm_common.contracts.events import EVENT_TYPES, PLATFORM_PRODUCED, Event, parse_event

__all__ = ["PLATFORM_PRODUCED", "FieldError", "parse_batch", "read_body"]


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
        ctx = err.get("ctx") or {}
        if err["type"] == "value_error" and "error" in ctx:
            reason = str(ctx["error"])  # the rule's own words, without pydantic's "Value error, " prefix
        if err["type"] == "union_tag_invalid":
            field, reason = "type", f"unknown event type; expected one of {', '.join(EVENT_TYPES)}"
        elif err["type"] == "union_tag_not_found":
            field, reason = "type", "missing event type"
        out.append(FieldError(index, field, reason))
    return out


def read_body(raw: bytes) -> tuple[Any, FieldError | None]:
    """A request body parsed as JSON (`wire.loads`), or why not: not JSON, or nested past the parser's reach.

    Returns (body, None) or (None, error with index None and field "(body)"). The other rules of `wire`
    (depth, duplicate keys, plain text) are checked per event by `parse_batch`, which can name the event.
    """
    try:
        return wire.loads(raw), None
    except wire.JsonRefused as exc:
        return None, FieldError(None, "(body)", exc.reason)


def _wire_error(index: int | None, raw: Any, *, depth: int) -> FieldError | None:
    refused = wire.first_problem(raw, depth=depth)
    if refused is None:
        return None
    return FieldError(index, ".".join(refused.path) or "(event)", refused.reason)


def parse_batch(body: Any, *, max_events: int, refused_types: frozenset[str] = frozenset(),
                received_at: datetime | None = None) -> tuple[list[Event], list[FieldError]]:
    """Validate a body (one event, or `{"events": [...]}`, parsed by `read_body`); any error rejects the batch.

    Returns (events, []) or ([], errors): one error per bad event (index, dotted field, reason), or one
    for the envelope (index None). Besides the event schema, the rules of `wire` (depth, duplicate keys,
    plain text) and, given `received_at` (ingest's clock, aware), the time ranges of the door
    (`occurred_at` at most 24 h after it, birthdays up to today) are such errors.
    """
    if isinstance(body, dict) and "events" in body and "type" not in body:
        for key in getattr(body, "duplicates", ()):
            return [], [FieldError(None, wire.printable(key), "this key appears more than once in one object")]
        extra = sorted(set(body) - {"events"})
        if extra:
            return [], [FieldError(None, wire.printable(extra[0]), "unknown field in batch envelope")]
        raw_events = body["events"]
        if not isinstance(raw_events, list):
            return [], [FieldError(None, "events", "must be a list of events")]
        if not raw_events:
            return [], [FieldError(None, "events", "must hold at least one event")]
        if len(raw_events) > max_events:
            return [], [FieldError(None, "events", f"at most {max_events} events per request")]
        indexed: list[tuple[int | None, Any]] = list(enumerate(raw_events))
        depth = 3  # body → events → event
    elif isinstance(body, dict):
        indexed = [(0, body)]
        depth = 1
    else:
        return [], [FieldError(None, "(body)", "must be a JSON object: an event or {\"events\": [...]}")]
    events: list[Event] = []
    errors: list[FieldError] = []
    for index, raw in indexed:
        if (bad := _wire_error(index, raw, depth=depth)) is not None:
            errors.append(bad)
            continue
        kind = raw.get("type") if isinstance(raw, dict) else None
        if isinstance(kind, str) and kind in refused_types:  # said first: no schema detail matters then
            errors.append(FieldError(index, "type", f"{kind} is produced by the platform itself, not posted"))
            continue
        try:
            event = parse_event(raw, received_at=received_at)
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
