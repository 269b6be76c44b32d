"""What cannot be processed is refused at the door (issue 6): one table per rule, each naming index and field.

Rules: plain text (no control characters), sane times, a bounded JSON depth, unique keys. Each refusal
rejects the whole batch, so nothing of it is published.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingest.domain.batch import FieldError, parse_batch, read_body
from scrm_common.contracts import wire

RECEIVED = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def event(i: int = 0, **changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": f"pay-{i}", "type": "payment.succeeded", "occurred_at": "2026-11-30T12:00:00Z",
        "contact": {"external_id": f"c{i}", "name": "Anna", "birthday": "1990-05-17"},
        "data": {"order_id": f"A{i}", "amount": 10.0, "currency": "EUR",
                 "items": [{"sku": "S1", "name": "Sneaker", "price": 10.0}]},
    }
    raw.update(changes)
    return raw


def door(raw: bytes | str) -> tuple[list[Any], list[FieldError]]:
    """What ingest does with a request body: parse it, then validate it against the time received."""
    body, error = read_body(raw.encode() if isinstance(raw, str) else raw)
    if error is not None:
        return [], [error]
    return parse_batch(body, max_events=1000, received_at=RECEIVED)


def batch_with(bad: dict[str, Any], at: int = 1) -> str:
    """A batch of three good events with `bad` at index `at`."""
    events = [event(i) for i in range(3)]
    events[at] = bad
    return json.dumps({"events": events})


def only_error(raw: bytes | str) -> FieldError:
    events, errors = door(raw)
    assert events == [] and len(errors) == 1, errors
    return errors[0]


def test_a_good_batch_passes_every_rule() -> None:
    events, errors = door(json.dumps({"events": [event(i) for i in range(3)]}))
    assert errors == [] and len(events) == 3


# --- plain text -------------------------------------------------------------------------------------------------

def _contact_name(value: str) -> dict[str, Any]:
    return event(1, contact={"external_id": "c1", "name": value})


CONTROL_CHARACTERS = [  # (case, bad event, field named)
    ("NUL in a contact's name", _contact_name("An\x00na"), "contact.name"),
    ("a C0 control (bell) in a name", _contact_name("Anna\x07"), "contact.name"),
    ("escape in a name", _contact_name("\x1b[31mAnna"), "contact.name"),
    ("DEL in a name", _contact_name("An\x7fna"), "contact.name"),
    ("a C1 control (NEL) in a name", _contact_name("An\x85na"), "contact.name"),
    ("a C1 control (U+009F) in a name", _contact_name("Anna\x9f"), "contact.name"),
    ("a control character in an item name", event(1, data={
        "order_id": "A1", "amount": 1.0, "currency": "EUR", "items": [{"sku": "S", "name": "Mug\x01", "price": 1.0}]}),
     "data.items.0.name"),
    ("a control character in an attribute value", event(1, type="contact.updated", data={"attributes": {"k": "v\x02"}}),
     "data.attributes.k"),
    ("a control character in an attribute key", event(1, type="contact.updated", data={"attributes": {"k\x03": "v"}}),
     "data.attributes.k\ufffd"),
    ("a control character in an unknown field's value", event(1, extra="x\x04"), "extra"),
    ("a lone surrogate in the order id", event(1, data={"order_id": "A\ud800", "amount": 1.0, "currency": "EUR"}),
     "data.order_id"),
]


@pytest.mark.parametrize(("case", "bad", "field"), CONTROL_CHARACTERS, ids=[c[0] for c in CONTROL_CHARACTERS])
def test_control_characters_in_text_are_refused_naming_index_and_field(case: str, bad: dict[str, Any],
                                                                       field: str) -> None:
    error = only_error(batch_with(bad))
    assert (error.index, error.field) == (1, field), case
    assert "\\u" in error.reason and ("control character" in error.reason or "surrogate" in error.reason)


@pytest.mark.parametrize("text", ["Anna\tMaria", "Zeile 1\nZeile 2", "CR\r\nLF", "Ünïcödé 😀 \u200b", "\xa0\xa0"])
def test_tab_line_feed_carriage_return_and_other_unicode_are_plain_text(text: str) -> None:
    events, errors = door(json.dumps(_contact_name(text)))
    assert errors == []
    assert events[0].contact.name == text


# --- times ------------------------------------------------------------------------------------------------------

def _at(at: datetime | str) -> str:
    return at if isinstance(at, str) else at.isoformat()


OCCURRED_AT = [  # (occurred_at, accepted)
    ("2000-01-01T00:00:00Z", True),
    ("1999-12-31T23:59:59Z", False),
    ("2000-01-01T00:30:00+01:00", False),  # 1999-12-31T23:30Z
    ("0001-01-01T00:00:00Z", False),
    ("0001-01-01T00:00:00+14:00", False),  # before year 1 in UTC: out of Python's range
    ("9999-12-31T23:59:59Z", False),
    ("9999-12-31T23:59:59-12:00", False),
    (RECEIVED + timedelta(hours=24), True),
    (RECEIVED + timedelta(hours=24, seconds=1), False),
    (RECEIVED.astimezone(ZoneInfo("Pacific/Kiritimati")) + timedelta(hours=23), True),
    ("2030-01-01T00:00:00Z", False),
    (RECEIVED - timedelta(days=3650), True),
]


@pytest.mark.parametrize(("occurred_at", "accepted"), OCCURRED_AT, ids=[_at(o) for o, _ in OCCURRED_AT])
def test_occurred_at_must_lie_between_2000_and_24_hours_after_the_time_received(occurred_at: datetime | str,
                                                                                 accepted: bool) -> None:
    events, errors = door(batch_with(event(1, occurred_at=_at(occurred_at))))
    if accepted:
        assert errors == [] and len(events) == 3
        return
    assert [(e.index, e.field) for e in errors] == [(1, "occurred_at")]
    assert "2000-01-01T00:00:00Z" in errors[0].reason and "2026-12-02T03:00:00Z" in errors[0].reason, errors
    assert errors[0].reason.startswith("must be"), errors  # the rule's words, not pydantic's "Value error, "


BIRTHDAYS = [  # (birthday, accepted)
    ("1900-01-01", True),
    ("1899-12-31", False),
    ("0001-01-01", False),
    ("9999-12-31", False),
    (RECEIVED.date().isoformat(), True),
    ((RECEIVED + timedelta(hours=24)).date().isoformat(), True),  # already today east of UTC
    ((RECEIVED + timedelta(days=2)).date().isoformat(), False),
    ("2026-02-29", False),  # not a date at all
]


@pytest.mark.parametrize(("birthday", "accepted"), BIRTHDAYS, ids=[b for b, _ in BIRTHDAYS])
def test_a_birthday_must_lie_between_1900_and_today(birthday: str, accepted: bool) -> None:
    events, errors = door(batch_with(event(1, contact={"external_id": "c1", "birthday": birthday}), at=2))
    if accepted:
        assert errors == [] and events[2].contact.birthday == date.fromisoformat(birthday)
        return
    assert [(e.index, e.field) for e in errors] == [(2, "contact.birthday")]
    if birthday != "2026-02-29":
        assert "1900-01-01" in errors[0].reason and "2026-12-02" in errors[0].reason, errors


def test_a_time_in_data_outside_the_contracts_range_is_refused_by_every_reader() -> None:
    """Without the time received (a consumer reading the log) the fixed range 2000 … 2100 still holds."""
    raw = event(0, type="account.updated", contact=None, data={
        "field": "account_update", "restrictions": [{"type": "RESTRICTED", "expires_at": "9999-12-31T00:00:00Z"}]})
    del raw["contact"]
    events, errors = parse_batch(raw, max_events=1)
    assert [(e.index, e.field) for e in errors] == [(0, "data.restrictions.0.expires_at")]
    assert "2100-01-01T00:00:00Z" in errors[0].reason


# --- depth ------------------------------------------------------------------------------------------------------

def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


DEPTHS = [  # (case, body, index, field)
    ("an event 11 levels deep", json.dumps(event(0, data=_nested(10))), 0, "data" + ".a" * 9),
    ("a batch's event 11 levels deep", batch_with(event(1, data=_nested(8))), 1, "data" + ".a" * 7),
    ("arrays count too", json.dumps(event(0, data={"items": [[[[[[[[[1]]]]]]]]]})), 0,
     "data.items.0.0.0.0.0.0.0"),
    ("200 levels, within the parser's reach", '{"events": [' + '{"a":' * 200 + "1" + "}" * 200 + "]}", 0, "a"),
    ("deeper than the parser recurses", "[" * 100_000 + "]" * 100_000, None, "(body)"),
]


@pytest.mark.parametrize(("case", "raw", "index", "field"), DEPTHS, ids=[c[0] for c in DEPTHS])
def test_json_nested_deeper_than_the_documented_maximum_is_refused(case: str, raw: str, index: int | None,
                                                                   field: str) -> None:
    error = only_error(raw)
    assert error.index == index, case
    assert error.field.startswith(field), (case, error)
    assert f"nested deeper than {wire.MAX_DEPTH} levels" in error.reason


def test_the_deepest_valid_body_is_well_within_the_maximum() -> None:
    events, errors = door(json.dumps({"events": [event(0)]}))  # body → events → event → data → items → item
    assert errors == [] and events
    assert wire.MAX_DEPTH >= 6 + 2


# --- duplicate keys ---------------------------------------------------------------------------------------------

DUPLICATES = [  # (case, raw body, index, field)
    ("a top-level key of an event",
     '{"event_id":"a","event_id":"b","type":"contact.created","occurred_at":"2026-11-30T12:00:00Z",'
     '"contact":{"external_id":"c"}}', 0, "event_id"),
    ("a contact's name in a batch's second event",
     '{"events":[' + json.dumps(event(0)) + ',{"event_id":"b","type":"contact.created",'
     '"occurred_at":"2026-11-30T12:00:00Z","contact":{"external_id":"c","name":"A","name":"B"}}]}', 1,
     "contact.name"),
    ("an item's price", json.dumps(event(0)).replace('"price": 10.0', '"price": 10.0, "price": 0.01'), 0,
     "data.items.0.price"),
    ("the batch envelope's events", '{"events":[' + json.dumps(event(0)) + '],"events":[]}', None, "events"),
]


@pytest.mark.parametrize(("case", "raw", "index", "field"), DUPLICATES, ids=[c[0] for c in DUPLICATES])
def test_a_key_given_twice_in_one_object_is_refused_naming_its_path(case: str, raw: str, index: int | None,
                                                                    field: str) -> None:
    error = only_error(raw)
    assert (error.index, error.field) == (index, field), case
    assert error.reason == "this key appears more than once in one object"


def test_the_same_key_in_different_objects_is_no_duplicate() -> None:
    events, errors = door(json.dumps({"events": [event(0), event(1)]}))
    assert errors == [] and len(events) == 2


# --- not JSON ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"a": 1}{"b": 2}'])
def test_text_that_is_not_json_is_refused_as_the_body(raw: bytes) -> None:
    error = only_error(raw)
    assert (error.index, error.field) == (None, "(body)")
    assert error.reason.startswith("not valid JSON")
