"""Ingest's HTTP routes with the database and the broker replaced by doubles that refuse what PostgreSQL and
the producer refuse: no input of any shape gets a 5xx, and every error has the documented JSON shape."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry

from ingest.adapters.db import KeyLookup
from ingest.adapters.http import IngestMetrics, build_router, install_error_handlers
from ingest.adapters.kafka import EventPublisher
from ingest.config import Settings
from scrm_common.clock import FixedClock
from scrm_common.http import Principal, ops_router
from tests.unit.ingest.test_webhook_properties import payload

SECRET = "unit-secret"
KEY = "unit-key"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _postgres_text(value: str) -> str:
    """What asyncpg and PostgreSQL do with a text parameter: a NUL or a lone surrogate is an error."""
    value.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
    if "\x00" in value:
        raise ValueError('invalid byte sequence for encoding "UTF8": 0x00')
    return value


# Keys of the bootstrap tenant "demo", by role, and one of a disabled tenant.
ROLE_KEYS = {"unit-key": "admin", "unit-events": "events", "unit-read": "read"}
DISABLED_KEY = "unit-disabled"


class Directory:
    """Tenants as ingest's TenantDirectory answers them; `broken` makes every lookup fail like a lost database."""

    def __init__(self) -> None:
        self.broken = False
        self.disabled: set[str] = set()

    async def lookup(self, api_key: str, *, cached: bool = False) -> KeyLookup:  # noqa: ARG002
        if self.broken:
            raise ConnectionError("database unavailable")
        role = ROLE_KEYS.get(_postgres_text(api_key))
        if api_key == DISABLED_KEY:
            return KeyLookup(None, tenant_disabled=True)
        return KeyLookup(None if role is None else Principal("demo", role, f"key_{role:0<12}"[:16]))  # type: ignore[arg-type]

    async def principal_for(self, api_key: str) -> Principal | None:
        return (await self.lookup(api_key)).principal

    async def is_disabled(self, tenant: str) -> bool:
        return tenant in self.disabled

    async def tenant_of_number(self, phone_number_id: str) -> str | None:
        return "demo" if _postgres_text(phone_number_id) == "100000000000001" else None

    async def tenant_of_waba(self, waba_id: str) -> str | None:
        return "demo" if _postgres_text(waba_id) == "200000000000001" else None

    async def ping(self) -> bool:
        return True


class Producer:
    """The broker: records what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    async def send(self, _topic: str, *, key: bytes, value: bytes, headers: Sequence[Any]) -> Any:  # noqa: ARG002
        self.sent.append((key, value))

        async def done() -> None:
            return None

        return done()


def _app() -> tuple[FastAPI, Directory, Producer]:
    directory, producer = Directory(), Producer()
    registry = CollectorRegistry()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(
        settings=Settings(whatsapp_app_secret=SECRET),
        directory=directory, publisher=EventPublisher(producer), clock=FixedClock(NOW),  # type: ignore[arg-type]
        metrics=IngestMetrics(registry)))
    app.include_router(ops_router(registry, directory.ping))
    return app, directory, producer


async def _call(app: FastAPI, method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
        return await client.request(method, path, **kwargs)


def _event(**contact: Any) -> dict[str, Any]:
    return {"event_id": "e-1", "type": "contact.created", "occurred_at": "2026-11-30T12:00:00Z",
            "contact": {"external_id": "cust-1", **contact}}


BAD_BODIES = [  # (case, raw body, status, error code, field)
    ("nested deeper than the JSON parser recurses", b"[" * 100_000 + b"]" * 100_000, 422, "invalid_json", "(body)"),
    ("a NUL in a name", json.dumps(_event(name="Anna\x00")).encode(), 422, "invalid_events", "contact.name"),
    ("a lone surrogate in a name", b'{"event_id":"e-1","type":"contact.created","occurred_at":"2026-11-30T12:00:00Z",'
                                   b'"contact":{"external_id":"cust-1","name":"Anna \\ud83e"}}',
     422, "invalid_events", "contact.name"),
    ("a lone surrogate in an unknown field's name", b'{"events":[{"event_id":"e-1","type":"contact.created",'
                                                    b'"occurred_at":"2026-11-30T12:00:00Z","contact":'
                                                    b'{"external_id":"c"},"x\\udc00":1}]}',
     422, "invalid_events", "x\ufffd"),
    ("a lone surrogate in the envelope", b'{"events":[],"x\\udc00":1}', 422, "invalid_events", "x\ufffd"),
    # Issue 6: the door rules, through the route (the time received comes from the route's clock).
    ("an escape character in a name", json.dumps(_event(name="\x1b[2JAnna")).encode(), 422, "invalid_events",
     "contact.name"),
    ("year 9999", json.dumps({**_event(), "occurred_at": "9999-12-31T23:59:59Z"}).encode(), 422, "invalid_events",
     "occurred_at"),
    ("two days ahead of the clock", json.dumps({**_event(), "occurred_at": "2026-12-02T12:00:01Z"}).encode(), 422,
     "invalid_events", "occurred_at"),
    ("a birthday tomorrow-but-one", json.dumps(_event(birthday="2026-12-02")).encode(), 422, "invalid_events",
     "contact.birthday"),
    ("nested 12 levels", json.dumps({**_event(), "data": {"attributes": {"a": [[[[[[[[[[1]]]]]]]]]]}}}).encode(), 422,
     "invalid_events", "data.attributes.a.0.0.0.0.0.0.0"),
    ("a key given twice", b'{"event_id":"e-1","type":"contact.created","occurred_at":"2026-11-30T12:00:00Z",'
                          b'"contact":{"external_id":"c","external_id":"d"}}', 422, "invalid_events",
     "contact.external_id"),
]


@pytest.mark.parametrize(("case", "raw", "status", "code", "field"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_bad_event_bodies_get_their_422_in_the_documented_shape_and_publish_nothing(
        case: str, raw: bytes, status: int, code: str, field: str) -> None:
    app, _, producer = _app()
    resp = await _call(app, "POST", "/v1/events", content=raw,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    assert resp.status_code == status, (case, resp.text[:300])
    body = resp.json()
    assert body["error"]["code"] == code and body["error"]["message"]
    assert field in [e["field"] for e in body["errors"]], body
    assert producer.sent == []


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/events"), ("GET", "/v1/nowhere")])
async def test_an_unexpected_failure_is_a_json_500_in_the_documented_shape(method: str, path: str) -> None:
    app, directory, _ = _app()
    directory.broken = True
    resp = await _call(app, method, path, json=_event(), headers={"Authorization": f"Bearer {KEY}"})
    if path == "/v1/nowhere":
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
        return
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["error"] == {"code": "internal_error", "message": "internal error; retry later"}


def _signed(raw: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(payload)
async def test_any_signed_webhook_is_a_200_and_metrics_can_still_be_scraped(raw_payload: Any) -> None:
    app, _, producer = _app()
    raw = json.dumps(raw_payload).encode()  # ensure_ascii: lone surrogates and NULs travel as escapes
    resp = await _call(app, "POST", "/v1/webhooks/whatsapp", content=raw, headers=_signed(raw))
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["received"] == len(producer.sent)
    assert (await _call(app, "GET", "/metrics")).status_code == 200


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), [
    ("GET", "/v1/webhooks/whatsapp", {"params": {"hub.mode": "subscribe", "hub.verify_token": "wrong",
                                                 "hub.challenge": "c-1"}}, 403, "verification_failed"),
    ("POST", "/v1/webhooks/whatsapp", {"content": b"{}", "headers": {"X-Hub-Signature-256": "sha256=00"}}, 401,
     "bad_signature"),
    ("POST", "/internal/v1/keys/introspect", {"json": {"api_key": "nobody"}}, 401, "unauthorized"),
    ("POST", "/internal/v1/keys/introspect", {"json": {"api_key": "nobody"},
                                              "headers": {"X-Scrm-Internal-Token": "dev-internal-token"}}, 404,
     "unknown_key"),
    ("POST", "/internal/v1/keys/introspect", {"json": {}, "headers": {"X-Scrm-Internal-Token": "dev-internal-token"}},
     422, "invalid_request"),
    ("POST", "/internal/v1/keys/introspect", {"json": {}}, 401, "unauthorized"),  # the token before the body
    ("DELETE", "/v1/events", {}, 405, "method_not_allowed"),
])
async def test_every_error_of_every_route_has_code_and_message(method: str, path: str, kwargs: dict[str, Any],
                                                               status: int, code: str) -> None:
    app, _, _ = _app()
    resp = await _call(app, method, path, **kwargs)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"]


async def test_the_handshake_still_echoes_the_challenge_as_plain_text() -> None:
    app, _, _ = _app()
    resp = await _call(app, "GET", "/v1/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": Settings().whatsapp_verify_token, "hub.challenge": "c-42"})
    assert (resp.status_code, resp.text) == (200, "c-42")
    assert resp.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(("key", "status", "code", "message"), [
    ("unit-read", 403, "forbidden", "a key with role 'read' may not do this; it needs role 'events' or 'admin'"),
    ("nobody", 401, "unauthorized", "unknown API key"),
    (DISABLED_KEY, 401, "unauthorized", "this API key's tenant is disabled"),
])
async def test_only_events_and_admin_keys_post_events_and_a_refusal_publishes_nothing(
        key: str, status: int, code: str, message: str) -> None:
    app, _, producer = _app()
    resp = await _call(app, "POST", "/v1/events", json=_event(), headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == {"code": code, "message": message}
    assert producer.sent == []
    metrics = (await _call(app, "GET", "/metrics")).text
    assert f'scrm_ingest_rejected_requests_total{{status="{status}"}} 1.0' in metrics


@pytest.mark.parametrize("key", ["unit-events", "unit-key"])
async def test_events_and_admin_keys_post_events(key: str) -> None:
    app, _, producer = _app()
    resp = await _call(app, "POST", "/v1/events", json=_event(), headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 202, resp.text
    assert len(producer.sent) == 1


PLATFORM_EVENTS = [
    {"event_id": "lc-1", "type": "link.clicked", "occurred_at": "2026-11-30T12:00:00Z",
     "contact": {"external_id": "cust-1"}, "data": {"link_id": "l-1", "url": "https://shop.example/x"}},
    {"event_id": "ms-1", "type": "message.status", "occurred_at": "2026-11-30T12:00:00Z",
     "contact": {"external_id": "cust-1"}, "data": {"message_id": "wamid.1", "status": "delivered"}},
    {"event_id": "ar-1", "type": "account.registered", "occurred_at": "2026-11-30T12:00:00Z",
     "data": {"account_id": "100000000000009", "waba_id": "200000000000009"}},
    {"event_id": "ax-1", "type": "account.removed", "occurred_at": "2026-11-30T12:00:00Z",
     "data": {"account_id": "100000000000001"}},
]


@pytest.mark.parametrize("key", ["unit-events", "unit-key"])
@pytest.mark.parametrize("event", PLATFORM_EVENTS, ids=[e["type"] for e in PLATFORM_EVENTS])
async def test_types_the_platform_produces_are_refused_from_any_key_with_422(key: str, event: dict[str, Any]) -> None:
    app, _, producer = _app()
    resp = await _call(app, "POST", "/v1/events", json=event, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"]["code"] == "invalid_events"
    assert [e["field"] for e in body["errors"]] == ["type"], body
    assert event["type"] in body["errors"][0]["reason"]
    assert producer.sent == []


async def test_a_webhook_of_a_disabled_tenant_is_acknowledged_counted_and_published_nowhere() -> None:
    app, directory, producer = _app()
    directory.disabled.add("demo")
    raw = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "200000000000001", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"display_phone_number": "15550001", "phone_number_id":
                                                    "100000000000001"},
                                       "contacts": [{"wa_id": "4915112345678", "profile": {"name": "A"}}],
                                       "messages": [{"from": "4915112345678", "id": "wamid.in-1",
                                                     "timestamp": "1764504000", "type": "text",
                                                     "text": {"body": "hi"}}]}}]}]}).encode()
    resp = await _call(app, "POST", "/v1/webhooks/whatsapp", content=raw, headers=_signed(raw))
    assert resp.status_code == 200 and resp.json() == {"received": 0}
    assert producer.sent == []
    metrics = (await _call(app, "GET", "/metrics")).text
    assert 'reason="tenant_disabled"' in metrics
    directory.disabled.clear()
    resp = await _call(app, "POST", "/v1/webhooks/whatsapp", content=raw, headers=_signed(raw))
    assert resp.json() == {"received": 1} and len(producer.sent) == 1
