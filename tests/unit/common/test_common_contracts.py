"""The shared contract: strict event schema, E.164 phones, the Kafka envelope, backoff."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from scrm_common.backoff import Backoff
from scrm_common.contracts.envelope import PoisonMessage, decode_event, encode_event, event_key
from scrm_common.contracts.events import PaymentSucceeded, parse_event
from scrm_common.phones import InvalidPhoneNumber, to_e164

INGESTED = datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC)


def payment(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "event_id": "e1", "type": "payment.succeeded", "occurred_at": "2026-03-01T12:00:00+01:00",
        "contact": {"external_id": "cust-1", "phone": "+49 151 12345678", "name": "Anna"},
        "data": {"order_id": "A-1", "amount": 149.9, "currency": "EUR",
                 "items": [{"sku": "s1", "name": "Shoes", "price": 149.9}]},
    }
    raw.update(changes)
    return raw


def test_valid_event_parses_into_its_type_with_defaults():
    event = parse_event(payment())
    assert isinstance(event, PaymentSucceeded)
    assert event.contact.phone == "+4915112345678"
    assert event.contact.key == "cust-1"
    assert event.data.tax == 0.0 and event.data.items[0].quantity == 1
    assert event.occurred_at.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize("change", [
    {"extra": 1},
    {"contact": {"external_id": "c", "nickname": "x"}},
    {"data": {"order_id": "A", "amount": 1.0, "currency": "EUR", "coupon": "X"}},
    {"data": {"order_id": "A", "amount": "149.90", "currency": "EUR"}},
    {"data": {"order_id": "A", "amount": 1.0, "currency": "eur"}},
    {"data": {"order_id": "A", "amount": -1.0, "currency": "EUR"}},
    {"data": {"order_id": "A", "amount": float("nan"), "currency": "EUR"}},
    {"data": {"order_id": 17, "amount": 1.0, "currency": "EUR"}},
    {"data": {"order_id": "A", "amount": 1.0, "currency": "EUR", "items": [{"sku": "s", "name": "n", "price": 1,
                                                                              "quantity": "2"}]}},
    {"occurred_at": "2026-03-01T12:00:00"},
    {"occurred_at": "yesterday"},
    {"event_id": ""},
    {"event_id": "x" * 129},
    {"contact": {}},
    {"contact": {"name": "no id"}},
    {"contact": {"external_id": "c", "timezone": "Mars/Olympus"}},
    {"contact": {"external_id": "c", "locale": "German"}},
    {"type": "payment.refunded"},
])
def test_strict_schema_rejects_unknown_fields_wrong_types_and_naive_times(change):
    with pytest.raises(ValidationError):
        parse_event(payment(**change))


def test_events_are_immutable():
    event = parse_event(payment())
    with pytest.raises(ValidationError):
        event.event_id = "other"  # type: ignore[misc]


@pytest.mark.parametrize(("raw", "e164"), [
    ("+49 151 12345678", "+4915112345678"),
    ("+4915112345678", "+4915112345678"),
    ("0049 151 12345678", "+4915112345678"),
    ("  +49 (151) 123-456-78 ", "+4915112345678"),
    ("+1 415 555 2671", "+14155552671"),
    ("+33 6 12 34 56 78", "+33612345678"),
])
def test_phone_numbers_are_normalised_to_e164(raw, e164):
    assert to_e164(raw) == e164


@pytest.mark.parametrize("raw", ["015112345678", "151 12345678", "+49 1", "+999 123456789", "not a phone", "", "+"])
def test_numbers_without_country_code_or_invalid_are_rejected(raw):
    with pytest.raises(InvalidPhoneNumber):
        to_e164(raw)


def test_event_round_trips_through_the_envelope():
    event = parse_event(payment())
    key, value, headers = encode_event("acme", event, ingested_at=INGESTED, correlation_id="corr-1")
    assert key == b"acme:cust-1" == event_key("acme", event)
    record = decode_event(key, value, headers)
    assert (record.tenant, record.event, record.ingested_at, record.correlation_id) == (
        "acme", event, INGESTED, "corr-1")
    assert record.contact_key == "cust-1"
    assert "null" not in value.decode()


def test_envelope_without_optional_headers_round_trips_with_none():
    event = parse_event(payment(contact={"phone": "+4915112345678"}))
    key, value, headers = encode_event("acme", event, ingested_at=None)
    record = decode_event(key, value, headers)
    assert (record.ingested_at, record.correlation_id, record.contact_key) == (None, None, "+4915112345678")


def test_tenant_falls_back_to_the_record_key():
    event = parse_event(payment())
    key, value, _ = encode_event("acme", event, ingested_at=INGESTED)
    assert decode_event(key, value, []).tenant == "acme"


@pytest.mark.parametrize(("key", "value", "headers"), [
    (b"acme:c", b"not json", [("tenant", b"acme")]),
    (b"acme:c", b"", [("tenant", b"acme")]),
    (b"acme:c", None, [("tenant", b"acme")]),
    (b"acme:c", b"\xff\xfe", [("tenant", b"acme")]),
    (b"acme:c", b"[]", [("tenant", b"acme")]),
    (b"acme:c", b"null", [("tenant", b"acme")]),
    (b"acme:c", json.dumps(payment(extra=1)).encode(), [("tenant", b"acme")]),
    (None, json.dumps(payment()).encode(), None),
    (None, json.dumps(payment()).encode(), [("tenant", b"")]),
])
def test_undecodable_records_are_poison(key, value, headers):
    with pytest.raises(PoisonMessage):
        decode_event(key, value, headers)


@pytest.mark.parametrize("headers", [
    [("tenant", b"acme"), ("ingested_at", b"not-a-time")],
    [("tenant", b"\xff")],
])
def test_bad_headers_are_poison_too(headers):
    with pytest.raises(PoisonMessage):
        decode_event(b"acme:cust-1", json.dumps(payment()).encode(), headers)


@given(st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9))])),
       st.text(min_size=1, max_size=20).filter(lambda t: ":" not in t), st.none() | st.text(min_size=1, max_size=30))
def test_envelope_round_trip_keeps_tenant_ingested_at_and_correlation_id(ingested_at, tenant, correlation_id):
    event = parse_event(payment())
    key, value, headers = encode_event(tenant, event, ingested_at=ingested_at, correlation_id=correlation_id)
    record = decode_event(key, value, headers)
    assert record.tenant == tenant
    assert record.ingested_at == ingested_at
    assert record.correlation_id == correlation_id
    assert record.event == event


# --- backoff ----------------------------------------------------------------------------------------

@given(base=st.floats(0.001, 10), cap=st.floats(0.001, 600), attempt=st.integers(-3, 1000), seed=st.integers())
def test_backoff_delay_is_between_half_and_full_ceiling_and_the_ceiling_is_capped(base, cap, attempt, seed):
    backoff = Backoff(base_seconds=base, max_seconds=cap)
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    delay = backoff.delay(attempt, random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling <= cap


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.2), (2, 0.4), (3, 0.8), (6, 6.4), (7, 10.0), (50, 10.0)])
def test_backoff_ceiling_doubles_until_the_cap(attempt, ceiling):
    delays = [Backoff().delay(attempt, random.Random(s)) for s in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)


def test_backoff_survives_a_very_long_outage():
    assert Backoff().delay(2000, random.Random(0)) == pytest.approx(10.0, rel=0.5)
