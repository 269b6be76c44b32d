"""Ingest's batch validation and per-tenant rate: all or nothing, precise errors, honest Retry-After."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.domain.batch import FieldError, parse_batch
from ingest.domain.rate_limit import TokenBucket


def event(i: int = 1, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"event_id": f"e{i}", "type": "contact.created", "occurred_at": "2026-03-01T12:00:00Z",
                           "contact": {"external_id": f"c{i}", "phone": "+49 151 12345678"}}
    raw.update(changes)
    return raw


def test_single_event_body_is_one_event():
    events, errors = parse_batch(event(), max_events=10)
    assert errors == []
    assert [e.event_id for e in events] == ["e1"]
    assert events[0].contact.phone == "+4915112345678"


def test_batch_of_events_keeps_their_order():
    events, errors = parse_batch({"events": [event(i) for i in range(5)]}, max_events=5)
    assert errors == []
    assert [e.event_id for e in events] == [f"e{i}" for i in range(5)]


@pytest.mark.parametrize(("body", "error"), [
    ({"events": []}, FieldError(None, "events", "must hold at least one event")),
    ({"events": "nope"}, FieldError(None, "events", "must be a list of events")),
    ({"events": [event()], "tenant": "x"}, FieldError(None, "tenant", "unknown field in batch envelope")),
    ([event()], FieldError(None, "(body)", "must be a JSON object: an event or {\"events\": [...]}")),
    ("text", FieldError(None, "(body)", "must be a JSON object: an event or {\"events\": [...]}")),
])
def test_malformed_envelope_is_rejected_with_one_error(body, error):
    assert parse_batch(body, max_events=10) == ([], [error])


def test_more_than_max_events_is_rejected_whole():
    events, errors = parse_batch({"events": [event(i) for i in range(11)]}, max_events=10)
    assert events == []
    assert errors == [FieldError(None, "events", "at most 10 events per request")]


@pytest.mark.parametrize(("bad", "field"), [
    ({"type": "contact.exploded"}, "type"),
    ({"type": None}, "type"),
    ({"colour": "red"}, "colour"),
    ({"occurred_at": "2026-03-01T12:00:00"}, "occurred_at"),
    ({"contact": {"external_id": "c", "phone": "015112345678"}}, "contact.phone"),
    ({"contact": {"external_id": "c", "wat": 1}}, "contact.wat"),
    ({"event_id": ""}, "event_id"),
])
def test_one_bad_event_rejects_the_batch_and_names_its_index_and_field(bad, field):
    batch = [event(0), event(1), event(2, **bad)]
    events, errors = parse_batch({"events": batch}, max_events=10)
    assert events == []
    assert errors and all(e.index == 2 for e in errors)
    assert field in [e.field for e in errors], errors


def test_errors_of_several_events_are_all_reported():
    batch = [event(0, event_id=""), event(1), event(2, colour="red")]
    _, errors = parse_batch({"events": batch}, max_events=10)
    assert {(e.index, e.field) for e in errors} == {(0, "event_id"), (2, "colour")}
    assert errors[0].as_dict().keys() == {"index", "field", "reason"}


def test_missing_type_is_reported_as_type():
    raw = event()
    del raw["type"]
    _, errors = parse_batch(raw, max_events=10)
    assert errors == [FieldError(0, "type", "missing event type")]


# --- TokenBucket -----------------------------------------------------------------------------------

def test_full_bucket_grants_its_burst_at_once_then_asks_to_wait():
    bucket = TokenBucket.full(rate=10, burst=20, now=0.0)
    assert bucket.take(20, now=0.0) == 0.0
    assert bucket.take(1, now=0.0) == pytest.approx(0.1)
    assert bucket.take(5, now=0.0) == pytest.approx(0.5)


def test_bucket_refills_at_its_rate_and_never_above_burst():
    bucket = TokenBucket.full(rate=10, burst=20, now=0.0)
    bucket.take(20, now=0.0)
    assert bucket.take(10, now=1.0) == 0.0
    assert bucket.take(1, now=1.0) > 0
    assert bucket.take(20, now=1000.0) == 0.0
    assert bucket.take(1, now=1000.0) == pytest.approx(0.1)


def test_refused_take_costs_nothing():
    bucket = TokenBucket.full(rate=10, burst=20, now=0.0)
    bucket.take(15, now=0.0)
    assert bucket.take(10, now=0.0) == pytest.approx(0.5)
    assert bucket.take(5, now=0.0) == 0.0


def test_retry_after_is_honest_for_a_request_within_burst():
    bucket = TokenBucket.full(rate=4, burst=8, now=0.0)
    bucket.take(8, now=0.0)
    wait = bucket.take(6, now=0.5)
    assert wait == pytest.approx(1.0)
    assert bucket.take(6, now=0.5 + wait) == 0.0


def test_request_larger_than_burst_is_never_granted():
    bucket = TokenBucket.full(rate=10, burst=20, now=0.0)
    assert bucket.take(21, now=0.0) > 0
    assert bucket.take(21, now=3600.0) > 0


@given(st.lists(st.tuples(st.floats(0, 5), st.integers(1, 20)), max_size=60))
def test_granted_tokens_never_exceed_burst_plus_rate_times_elapsed(requests):
    bucket = TokenBucket.full(rate=10, burst=20, now=0.0)
    now, granted = 0.0, 0
    for gap, n in requests:
        now += gap
        wait = bucket.take(n, now)
        assert wait >= 0
        if wait == 0:
            granted += n
        assert granted <= 20 + 10 * now + 1e-6


def test_platform_produced_types_are_refused_with_index_and_reason():
    status = {"event_id": "s-1", "type": "message.status", "occurred_at": "2026-11-22T10:00:00Z",
              "contact": {"phone": "+4915112345678"}, "data": {"message_id": "wamid.X", "status": "read"}}
    events, errors = parse_batch({"events": [event(0), status]}, max_events=10,
                                 refused_types=frozenset({"message.status"}))
    assert events == []
    assert [(e.index, e.field) for e in errors] == [(1, "type")]
    assert "produced by the platform" in errors[0].reason


def test_a_platform_type_is_refused_as_such_even_when_its_data_is_incomplete() -> None:
    """What matters is that a shop may not post it at all, not which of its fields are missing."""
    status = {"event_id": "s-1", "type": "message.status", "occurred_at": "2026-11-22T10:00:00Z", "data": {}}
    events, errors = parse_batch(status, max_events=10, refused_types=frozenset({"message.status"}))
    assert events == []
    assert [(e.index, e.field) for e in errors] == [(0, "type")]
    assert "produced by the platform" in errors[0].reason


@pytest.mark.parametrize(("changes", "field", "reason"), [
    ({"contact": {"external_id": "c1", "name": "Anna\x00"}}, "contact.name", "NUL"),
    ({"contact": {"external_id": "c\x001"}}, "contact.external_id", "NUL"),
    ({"data": {"attributes": {"note": "x\ud800"}}}, "data.attributes.note", "surrogate"),
    ({"data": {"attributes": {"n\udc00te": "x"}}}, "data.attributes.n\ufffdte", "surrogate"),
    ({"data": {"tags": ["vip", "\x00"]}}, "data.tags.1", "NUL"),
])
def test_text_no_consumer_could_store_is_refused_with_its_field(changes, field, reason):
    """A lone surrogate cannot even be published (it was a 500) and PostgreSQL stores no NUL: a precise 422."""
    events, errors = parse_batch({"events": [event(1), event(2, **changes)]}, max_events=10)
    assert events == []
    [error] = errors
    assert (error.index, error.field) == (1, field)
    assert reason in error.reason
