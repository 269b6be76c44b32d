"""A record that breaks a rule of the door is poison to every consumer too: ingest and consumers agree (issue 6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from scrm_common.contracts.envelope import PoisonMessage, decode_event, encode_event
from scrm_common.contracts.events import parse_event
from scrm_common.contracts.schemas import event_schemas
from scrm_common.contracts.wire import PLAIN_TEXT_PATTERN

GOOD = {"event_id": "e-1", "type": "contact.created", "occurred_at": "2026-11-30T12:00:00Z",
        "contact": {"external_id": "c-1", "name": "Anna"}}


def _with(**changes: Any) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


POISON = [  # (case, record value, what the dead letter's error names)
    ("a NUL in a name", _with(contact={"external_id": "c-1", "name": "An\x00na"}), "contact.name"),
    ("a C1 control in a name", _with(contact={"external_id": "c-1", "name": "An\x9bna"}), "contact.name"),
    ("year 9999", _with(occurred_at="9999-12-31T23:59:59Z"), "occurred_at"),
    ("year 1", _with(occurred_at="0001-01-01T00:00:00Z"), "occurred_at"),
    ("a birthday in year 1", _with(contact={"external_id": "c-1", "birthday": "0001-01-01"}), "contact.birthday"),
    ("a duplicate key", b'{"event_id":"a","event_id":"b","type":"contact.created","occurred_at":'
                        b'"2026-11-30T12:00:00Z","contact":{"external_id":"c"}}', "event_id"),
    ("nested past the maximum", _with(extra={"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {}}}}}}}}}}),
     "nested deeper than 10"),
    ("nested past the parser's recursion", b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
]


@pytest.mark.parametrize(("case", "value", "named"), POISON, ids=[c[0] for c in POISON])
def test_what_the_door_refuses_is_poison_to_a_consumer(case: str, value: bytes, named: str) -> None:
    with pytest.raises(PoisonMessage) as refused:
        decode_event(b"demo:c-1", value, [("tenant", b"demo")])
    assert named in str(refused.value), case


def test_a_good_event_still_reads_back_as_it_was_written() -> None:
    event = parse_event(GOOD)
    key, value, headers = encode_event("demo", event, ingested_at=datetime(2026, 11, 30, tzinfo=UTC))
    assert decode_event(key, value, headers).event == event


def test_a_consumer_reading_later_does_not_apply_the_doors_clock() -> None:
    """Only ingest knows when an event was received: a consumer accepts an occurred_at within 2000 … 2100."""
    assert parse_event({**GOOD, "occurred_at": "2099-12-31T00:00:00Z"}).occurred_at.year == 2099
    with pytest.raises(ValueError, match="24 hours after the time received"):
        parse_event({**GOOD, "occurred_at": "2099-12-31T00:00:00Z"}, received_at=datetime(2026, 12, 1, tzinfo=UTC))


def test_the_published_schemas_state_the_plain_text_rule_and_the_time_ranges() -> None:
    schema = event_schemas()["payment.succeeded"]
    assert schema["$defs"]["Contact"]["properties"]["name"]["anyOf"][0]["pattern"] == PLAIN_TEXT_PATTERN
    assert "2000-01-01T00:00:00Z" in schema["properties"]["occurred_at"]["description"]
    assert "1900-01-01" in schema["$defs"]["Contact"]["properties"]["birthday"]["anyOf"][0]["description"]
