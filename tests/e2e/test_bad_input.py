"""CONTRACT §2: every bad input gets its documented answer and publishes nothing."""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scrm_common.contracts import topics
from tests.support.events import contact_created, new_order, new_phone, payment
from tests.support.stack import TestStack, start_stack


@pytest.fixture(scope="module")
def ingest_only(backend, work_dir: Path) -> Iterator[TestStack]:  # type: ignore[no-untyped-def]
    stack = start_stack(work_dir, backend, processes=("ingest",),
                        env={"SCRM_INGEST_RATE_PER_SECOND": "5", "SCRM_INGEST_BURST": "20"})
    yield stack
    stack.close()


def _valid() -> dict[str, Any]:
    return payment(order_id=new_order(), phone=new_phone(), external_id="c-1")


def _with(path: str, value: Any) -> dict[str, Any]:
    event = copy.deepcopy(_valid())
    *parents, last = path.split(".")
    node = event
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return event


_DELETE = object()

SCHEMA_VIOLATIONS = [
    ("missing event_id", _DELETE, "event_id", "event_id"),
    ("event_id too long", "x" * 129, "event_id", "event_id"),
    ("unknown type", "payment.exploded", "type", "type"),
    ("naive occurred_at", "2026-11-22T09:59:58", "occurred_at", "occurred_at"),
    ("occurred_at not a date", "yesterday", "occurred_at", "occurred_at"),
    ("unknown top-level field", "x", "surprise", "surprise"),
    ("phone without country code", "015112345678", "contact.phone", "contact.phone"),
    ("phone not a number", "+49abc", "contact.phone", "contact.phone"),
    ("unknown time zone", "Mars/Olympus", "contact.timezone", "contact.timezone"),
    ("amount as text", "149.90", "data.amount", "data.amount"),
    ("negative amount", -1, "data.amount", "data.amount"),
    ("lower-case currency", "eur", "data.currency", "data.currency"),
    ("missing order_id", _DELETE, "data.order_id", "data.order_id"),
    ("quantity zero", 0, "data.items.0.quantity", "data.items.0.quantity"),
    ("unknown data field", 1, "data.coupon", "data.coupon"),
    ("items not a list", "sneaker", "data.items", "data.items"),
]


@pytest.mark.parametrize(("case", "value", "path", "field"), SCHEMA_VIOLATIONS, ids=[c[0] for c in SCHEMA_VIOLATIONS])
def test_each_schema_violation_is_rejected_with_index_field_and_reason(
        ingest_only: TestStack, case: str, value: Any, path: str, field: str) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    bad = _with(path, value)
    resp = ingest_only.post_events({"events": [_valid(), bad, _valid()]})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"]["code"] == "invalid_events"
    assert {"index": 1, "field": field} in [{"index": e["index"], "field": e["field"]} for e in body["errors"]], body
    assert all(e["reason"] for e in body["errors"])
    assert ingest_only.topic_size(topics.EVENTS) == before  # the whole batch was refused


def test_contact_without_any_identity_is_rejected(ingest_only: TestStack) -> None:
    event = contact_created(phone=new_phone())
    event["contact"] = {"name": "Nobody"}
    resp = ingest_only.post_events(event)
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "contact"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not-a-key", "Basic abc"])
def test_missing_or_unknown_key_is_401_and_publishes_nothing(ingest_only: TestStack, header: str | None) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    headers = {"Authorization": header} if header else {}
    resp = ingest_only.http.post(ingest_only.url("ingest", "/v1/events"), json=_valid(), headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert ingest_only.topic_size(topics.EVENTS) == before


def test_body_over_4_mib_is_413(ingest_only: TestStack) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    event = _valid()
    event["data"]["items"][0]["name"] = "x" * 200
    raw = json.dumps({"events": [event] * 30_000}).encode()
    assert len(raw) > 4 * 1024 * 1024
    resp = ingest_only.http.post(ingest_only.url("ingest", "/v1/events"), content=raw,
                                 headers={**ingest_only.auth, "Content-Type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "body_too_large"
    assert ingest_only.topic_size(topics.EVENTS) == before


SIX_MB = 6 * 1024 * 1024


def _six_mb_body(framing: str) -> bytes | Iterable[bytes]:
    """A 6 MB JSON body, with a Content-Length (bytes) or chunked (an iterable: urllib then sends it chunked)."""
    filler = b'{"events": [' + b" " * (SIX_MB - 14) + b"]}"
    if framing == "content-length":
        return filler
    return (filler[i:i + 64 * 1024] for i in range(0, len(filler), 64 * 1024))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/v1/events", "/v1/webhooks/whatsapp"])
def test_a_6_mb_body_from_a_client_that_writes_it_all_before_reading_gets_the_413_and_its_json_error(
        ingest_only: TestStack, path: str, framing: str) -> None:
    """Issue 5 §5: urllib writes the whole body before it reads; it must see the 413, not a connection reset."""
    before = ingest_only.topic_size(topics.EVENTS)
    request = urllib.request.Request(
        ingest_only.url("ingest", path), data=_six_mb_body(framing), method="POST",  # type: ignore[arg-type]
        headers={**ingest_only.auth, "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 - a local test server
    assert answer.value.code == 413
    assert answer.value.headers["Connection"] == "close"
    assert answer.value.headers["Content-Type"] == "application/json"
    assert json.loads(answer.value.read())["error"]["code"] == "body_too_large"
    assert ingest_only.topic_size(topics.EVENTS) == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\"text\"", b'{"events": []}', b'{"events": {}}'])
def test_malformed_bodies_are_422(ingest_only: TestStack, raw: bytes) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    resp = ingest_only.http.post(ingest_only.url("ingest", "/v1/events"), content=raw,
                                 headers={**ingest_only.auth, "Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"]
    assert ingest_only.topic_size(topics.EVENTS) == before


UNSTORABLE_BODIES = [  # (case, raw body, field named in the 422)
    ("nested deeper than the JSON parser recurses", b'{"events": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
     "(body)"),
    ("a NUL in a contact's name", b'{"event_id": "nul-1", "type": "contact.created", "occurred_at": '
                                  b'"2026-11-22T10:00:00Z", "contact": {"external_id": "c-nul", "name": "An\\u0000na"}}',
     "contact.name"),
    ("a lone surrogate in an attribute", b'{"event_id": "sur-1", "type": "contact.updated", "occurred_at": '
                                         b'"2026-11-22T10:00:00Z", "contact": {"external_id": "c-sur"}, '
                                         b'"data": {"attributes": {"note": "x\\ud800"}}}', "data.attributes.note"),
]


@pytest.mark.parametrize(("case", "raw", "field"), UNSTORABLE_BODIES, ids=[c[0] for c in UNSTORABLE_BODIES])
def test_bodies_that_were_500s_are_422_with_their_field(ingest_only: TestStack, case: str, raw: bytes,
                                                        field: str) -> None:
    """Issue 5: no input gets a 5xx. Deep nesting raised RecursionError, a lone surrogate could not be encoded
    for the broker, and a NUL cannot be stored by any consumer (PostgreSQL): each a precise 422 now."""
    before = ingest_only.topic_size(topics.EVENTS)
    resp = ingest_only.http.post(ingest_only.url("ingest", "/v1/events"), content=raw,
                                 headers={**ingest_only.auth, "Content-Type": "application/json"})
    assert resp.status_code == 422, (case, resp.text[:300])
    assert field in [e["field"] for e in resp.json()["errors"]]
    assert ingest_only.topic_size(topics.EVENTS) == before


def test_more_than_1000_events_is_422(ingest_only: TestStack) -> None:
    resp = ingest_only.post_events({"events": [_valid()] * 1001})
    assert resp.status_code == 422
    assert resp.json()["errors"][0]["field"] == "events"


def test_over_the_tenant_rate_is_429_with_retry_after(ingest_only: TestStack) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    resp = ingest_only.post_events({"events": [_valid() for _ in range(21)]})  # burst is 20 in this stack
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert ingest_only.topic_size(topics.EVENTS) == before


def test_a_valid_batch_is_202_after_the_broker_has_it(ingest_only: TestStack) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    resp = ingest_only.post_events({"events": [_valid(), _valid()]})
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 2}
    # Tansu's latest offset is the last batch's base offset + 1, so only "it moved" is exact here.
    assert ingest_only.topic_size(topics.EVENTS) > before


def test_a_status_posted_by_a_shop_is_refused_because_only_the_platform_reports_delivery(
        ingest_only: TestStack) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    forged = {"event_id": "forged-1", "type": "message.status", "occurred_at": "2026-11-22T10:00:00Z",
              "contact": {"phone": new_phone()}, "data": {"message_id": "wamid.X", "status": "read"}}
    resp = ingest_only.post_events(forged)
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"index": 0, "field": "type", "reason": resp.json()["errors"][0]["reason"]}]
    assert ingest_only.topic_size(topics.EVENTS) == before


def test_an_event_too_large_for_one_broker_request_is_422_not_a_retry_forever(ingest_only: TestStack) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    cart = {"event_id": "big-cart", "type": "cart.updated", "occurred_at": "2026-11-22T10:00:00Z",
            "contact": {"phone": new_phone()},
            "data": {"cart_id": "c-big", "total": 1.0, "currency": "EUR",
                     "items": [{"sku": f"S{i}", "name": "n" * 256, "price": 1.0, "quantity": 1,
                                "image_url": "https://img.example/" + "x" * 2000} for i in range(500)]}}
    resp = ingest_only.post_events({"events": [_valid(), cart]})
    assert resp.status_code == 422, resp.text
    [error] = resp.json()["errors"]
    assert (error["index"], error["field"]) == (1, "(event)")
    assert ingest_only.topic_size(topics.EVENTS) == before



PREFERENCE_VIOLATIONS = [
    ("negative weekly limit", {"max_promotions_per_week": -1}, "data.preferences.max_promotions_per_week"),
    ("weekly limit as text", {"max_promotions_per_week": "two"}, "data.preferences.max_promotions_per_week"),
    ("monthly limit too high", {"max_promotions_per_month": 10_000}, "data.preferences.max_promotions_per_month"),
    ("hours as words", {"preferred_hours": "evenings"}, "data.preferences.preferred_hours"),
    ("hours without minutes", {"preferred_hours": "18-21"}, "data.preferences.preferred_hours"),
    ("hour 25", {"preferred_hours": "18:00-25:00"}, "data.preferences.preferred_hours"),
    ("empty window", {"preferred_hours": "18:00-18:00"}, "data.preferences.preferred_hours"),
    ("passive as text", {"passive": "yes"}, "data.preferences.passive"),
    ("a list as a preference", {"channels": ["whatsapp"]}, "data.preferences"),
]


@pytest.mark.parametrize(("case", "preferences", "field"), PREFERENCE_VIOLATIONS,
                         ids=[c[0] for c in PREFERENCE_VIOLATIONS])
def test_a_preference_that_makes_no_sense_is_422_naming_the_field_and_publishes_nothing(
        ingest_only: TestStack, case: str, preferences: dict[str, Any], field: str) -> None:
    before = ingest_only.topic_size(topics.EVENTS)
    bad = contact_created(phone=new_phone(), external_id="c-pref")
    bad["data"]["preferences"] = preferences
    resp = ingest_only.post_events({"events": [_valid(), bad]})
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert [e["field"] for e in errors if e["index"] == 1] == [field], errors
    assert ingest_only.topic_size(topics.EVENTS) == before  # the whole batch was refused


def test_sensible_preferences_and_a_time_zone_are_accepted(ingest_only: TestStack) -> None:
    good = contact_created(phone=new_phone(), external_id="c-pref-ok")
    good["contact"]["timezone"] = "America/Santiago"
    good["data"]["preferences"] = {"max_promotions_per_week": 2, "max_promotions_per_month": 0, "passive": False,
                                   "preferred_hours": "20:00-24:00", "favourite_colour": "teal"}
    resp = ingest_only.post_events({"events": [good]})
    assert resp.status_code == 202, resp.text
