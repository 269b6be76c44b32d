"""The sender's HTTP API against the real PostgreSQL: invalid-number marks visible and removable (R-S7),
errors in the documented `{"error": {"code", "message"}}` shape, roles (`read` reads, `admin` changes,
`events` neither). Accounts: test_accounts_http.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.db import make_engine, migrate
from scrm_common.http import KeyIntrospection
from sender.adapters.accounts import AccountRepository
from sender.adapters.cloud_api import CloudApiClient
from sender.adapters.db import SendLog
from sender.adapters.http import build_router, install_error_handlers
from sender.adapters.secrets import DEV_KEY, TokenCipher
from sender.main import MIGRATIONS, SCHEMA

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=2)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


def keys(tenant: str) -> KeyIntrospection:
    """Key introspection as ingest answers it: an `admin` key ("write"), a `read` and an `events` key of one tenant."""
    roles = {"write": "admin", "read": "read", "events": "events"}

    def handler(request: httpx.Request) -> httpx.Response:
        key = json.loads(request.content)["api_key"]
        if key not in roles:
            return httpx.Response(404, json={"error": {"code": "unknown_key", "message": "unknown"}})
        return httpx.Response(200, json={"tenant": tenant, "role": roles[key], "key_id": f"key_{key}"})

    return KeyIntrospection("http://ingest", internal_token="internal", ttl_seconds=0,
                            client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))


def router(engine: AsyncEngine, log: SendLog, tenant: str) -> APIRouter:
    cipher = TokenCipher([DEV_KEY])
    return build_router(engine=engine, send_log=log, keys=keys(tenant), clock=FixedClock(NOW),
                        accounts=AccountRepository(cipher),
                        cloud_api=CloudApiClient(base_url="http://sim", version="v25.0", timeout=1.0, max_connections=1))


@pytest.fixture
async def api(engine: AsyncEngine) -> AsyncIterator[tuple[httpx.AsyncClient, str, SendLog]]:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    log = SendLog()
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router(engine, log, tenant))
    async with engine.begin() as conn:
        await log.mark_invalid_numbers(conn, [
            {"tenant": tenant, "phone": "+4915112345678", "code": 131026, "at": NOW - timedelta(days=1),
             "expires": NOW + timedelta(days=29)},
            {"tenant": tenant, "phone": "+4915187654321", "code": 131026, "at": NOW - timedelta(days=40),
             "expires": NOW - timedelta(days=10)},
            {"tenant": "someone-else", "phone": "+4915100000000", "code": 131026, "at": NOW,
             "expires": NOW + timedelta(days=30)},
        ])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a failure is answered, as in production
    async with httpx.AsyncClient(transport=transport, base_url="http://sender") as client:
        yield client, tenant, log


WRITE, READ = {"Authorization": "Bearer write"}, {"Authorization": "Bearer read"}


async def test_marks_in_force_are_listed_with_code_and_expiry(api) -> None:  # type: ignore[no-untyped-def]
    client, tenant, _ = api
    resp = await client.get("/v1/invalid-numbers", headers=READ)
    assert resp.status_code == 200
    body = resp.json()
    assert body["tenant"] == tenant
    assert body["invalid_numbers"] == [{"phone": "+4915112345678", "code": 131026,
                                        "marked_at": "2026-11-29T09:00:00Z", "expires_at": "2026-12-29T09:00:00Z"}]
    everything = (await client.get("/v1/invalid-numbers", params={"include_expired": "true"}, headers=READ)).json()
    assert [m["phone"] for m in everything["invalid_numbers"]] == ["+4915112345678", "+4915187654321"]


@pytest.mark.parametrize("path_phone", ["%2B4915112345678", "4915112345678", "+49 151 12345678"])
async def test_a_mark_is_removed_with_a_write_key(api, path_phone: str) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = api
    resp = await client.delete(f"/v1/invalid-numbers/{path_phone}", headers=WRITE)
    assert resp.status_code == 204, resp.text
    assert (await client.get("/v1/invalid-numbers", headers=READ)).json()["invalid_numbers"] == []
    again = await client.delete(f"/v1/invalid-numbers/{path_phone}", headers=WRITE)
    assert again.status_code == 404
    assert again.json() == {"error": {"code": "not_marked", "message": "+4915112345678 is not marked invalid"}}


@pytest.mark.parametrize(("method", "path", "headers", "status", "code"), [
    ("DELETE", "/v1/invalid-numbers/%2B4915112345678", READ, 403, "forbidden"),
    ("DELETE", "/v1/invalid-numbers/%2B4915112345678", {"Authorization": "Bearer events"}, 403, "forbidden"),
    ("GET", "/v1/invalid-numbers", {"Authorization": "Bearer events"}, 403, "forbidden"),
    ("GET", "/v1/messages", {"Authorization": "Bearer events"}, 403, "forbidden"),
    ("DELETE", "/v1/invalid-numbers/%2B4915100000000", WRITE, 404, "not_marked"),  # another tenant's mark
    ("DELETE", "/v1/invalid-numbers/not-a-phone", WRITE, 422, "invalid_phone"),
    ("GET", "/v1/invalid-numbers", {}, 401, "unauthorized"),
    ("GET", "/v1/invalid-numbers", {"Authorization": "Bearer nope"}, 401, "unauthorized"),
    ("GET", "/v1/messages/no-such-key", READ, 404, "not_found"),
    ("GET", "/v1/messages", READ | {"x": "1"}, 200, None),
    ("GET", "/v1/messages?limit=0", READ, 422, "invalid_request"),
    ("GET", "/v1/nowhere", READ, 404, "not_found"),
    # PostgreSQL compares no text holding a NUL: these were database errors, answered as plain-text 500s
    ("GET", "/v1/messages/key%00with-nul", READ, 404, "not_found"),
    ("GET", "/v1/messages?contact=cust%00-1", READ, 422, "invalid_request"),
    ("DELETE", "/v1/invalid-numbers/%2B49151%0012345678", WRITE, 422, "invalid_phone"),
])
async def test_errors_have_the_documented_shape(api, method: str, path: str, headers: dict[str, str],  # type: ignore[no-untyped-def]
                                                status: int, code: str | None) -> None:
    client, _, _ = api
    resp = await client.request(method, path, headers=headers)
    assert resp.status_code == status, resp.text
    if code is not None:
        body = resp.json()
        assert body["error"]["code"] == code and body["error"]["message"]
    # nothing changed for a refused request
    assert len((await client.get("/v1/invalid-numbers", headers=READ)).json()["invalid_numbers"]) == (
        0 if (method, status) == ("DELETE", 204) else 1)


class BrokenLog(SendLog):
    """A send log whose database went away."""

    async def recent(self, *_args: object, **_kwargs: object) -> list[dict]:
        raise ConnectionResetError("connection to the database was lost")


async def test_an_unexpected_failure_is_a_json_500_in_the_documented_shape(engine: AsyncEngine) -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router(engine, BrokenLog(), "t-broken"))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://sender") as client:
        resp = await client.get("/v1/messages", headers=READ)
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"error": {"code": "internal_error", "message": "internal error; retry later"}}


async def _logged(engine: AsyncEngine, log: SendLog, tenant: str, key: str, contact_key: str, phone: str,
                  wa_id: str | None = None) -> None:
    async with engine.begin() as conn:
        await log.record(conn, [{
            "tenant": tenant, "idempotency_key": key, "account_id": "100", "flow": "f", "category": "utility",
            "contact_key": contact_key, "to_phone": phone, "command": "{}", "state": "queued",
            "next_attempt_at": NOW, "queued_at": NOW, "event_ingested_at": None, "error_reason": None}])
        if wa_id:
            await conn.execute(text("UPDATE messages SET wa_id = :w WHERE tenant = :t AND idempotency_key = :k"),
                               {"w": wa_id, "t": tenant, "k": key})


@pytest.mark.parametrize(("contact", "keys"), [
    ("cust-1", ["k1"]),  # the shop's own key, as before
    ("+4915112345678", ["k1"]),
    ("+49 151 1234-5678", ["k1"]),
    ("0049 151 12345678", ["k1"]),
    ("4915112345678", ["k1"]),
    ("+5215512345678", ["k2"]),  # Mexico: the legacy form finds the number stored without the 1
    ("525512345678", ["k2"]),
    ("+55 11 8765-4321", ["k3"]),  # Brazil: the 8-digit form finds the wa_id WhatsApp answered with
    ("+5511987654321", ["k3"]),
    ("+4915199999999", []),
    ("cust-9", []),
])
async def test_messages_are_found_by_the_phone_sent_to(api, engine: AsyncEngine, contact: str,  # type: ignore[no-untyped-def]
                                                     keys: list[str]) -> None:
    client, tenant, log = api
    await _logged(engine, log, tenant, "k1", "cust-1", "+4915112345678")
    await _logged(engine, log, tenant, "k2", "cust-2", "+525512345678")
    await _logged(engine, log, tenant, "k3", "cust-3", "+5511987654321", wa_id="551187654321")
    await _logged(engine, log, "someone-else", "k1", "cust-1", "+4915112345678")
    resp = await client.get("/v1/messages", params={"contact": contact}, headers=READ)
    assert resp.status_code == 200, resp.text
    assert [m["idempotency_key"] for m in resp.json()["messages"]] == keys
