"""WhatsApp accounts through /v1/accounts against the real PostgreSQL and an in-process WhatsApp simulator:
created, listed, changed and removed per tenant; a number is one tenant's; bad values and refused tokens are
422s that store nothing; tokens are encrypted at rest, rotated, and never in a response or a log line;
every change is an `account.*` event in the outbox; roles decide who may do what (issue 7, item 2)."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.db import make_engine, migrate
from scrm_common.http import INTERNAL_TOKEN_HEADER, ROLES_EXTENSION, KeyIntrospection, service_app
from sender.adapters.accounts import TOKEN_UNREADABLE, AccountRepository, NewAccount
from sender.adapters.cloud_api import CloudApiClient
from sender.adapters.db import SendLog
from sender.adapters.http import build_router
from sender.adapters.secrets import TokenCipher
from sender.domain.accounts import AccountPolicy
from sender.domain.pacing import PacingState, allowance
from sender.main import MIGRATIONS, SCHEMA
from whatsapp_sim.app import create_app
from whatsapp_sim.config import SimulatorSettings

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
KEY = Fernet.generate_key()


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


def _number() -> str:
    return f"1{random.randint(10**14, 10**15 - 1)}"


def _ingest(keys: dict[str, tuple[str, str]]) -> httpx.AsyncClient:
    """Ingest's key introspection as it answers: 200 with tenant and role, 404 for an unknown key."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers[INTERNAL_TOKEN_HEADER] == "internal"
        key = json.loads(request.content)["api_key"]
        if key not in keys:
            return httpx.Response(404, json={"error": {"code": "unknown_key", "message": "no"}})
        tenant, role = keys[key]
        return httpx.Response(200, json={"tenant": tenant, "role": role, "key_id": f"key_{key}"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@dataclass
class Harness:
    client: httpx.AsyncClient
    engine: AsyncEngine
    repo: AccountRepository
    log: SendLog
    cipher: TokenCipher
    a: str  # tenants
    b: str
    numbers: list[tuple[str, str, str]]  # (phone number id, token, WABA) the simulator serves
    responses: list[str] = field(default_factory=list)

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {who}"}

    async def call(self, method: str, path: str, who: str = "admin-a", **kwargs: Any) -> httpx.Response:
        resp = await self.client.request(method, path, headers=self.headers(who), **kwargs)
        self.responses.append(resp.text)
        return resp

    def body(self, n: int = 0, **extra: Any) -> dict[str, Any]:
        number, token, waba = self.numbers[n]
        return {"account_id": number, "waba_id": waba, "access_token": token, **extra}

    async def events(self, tenant: str) -> list[tuple[str, dict[str, Any], dict[str, str]]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT key, value, headers FROM outbox ORDER BY id"))).all()
        out = []
        for r in rows:
            key = bytes(r.key).decode()
            if key.startswith(tenant + ":"):
                out.append((key, json.loads(bytes(r.value)), dict(map(tuple, r.headers))))
        return out

    async def stored(self, account_id: str) -> Any:
        async with self.engine.connect() as conn:
            return (await conn.execute(text("SELECT * FROM accounts WHERE account_id = :a"),
                                       {"a": account_id})).first()


def _app(engine: AsyncEngine, repo: AccountRepository, log: SendLog, api: CloudApiClient,
         keys: dict[str, tuple[str, str]]) -> Any:
    introspection = KeyIntrospection("http://ingest", internal_token="internal", ttl_seconds=0, client=_ingest(keys))
    app = service_app("scrm sender", "0")
    app.include_router(build_router(engine=engine, send_log=log, keys=introspection, clock=FixedClock(NOW),
                                    accounts=repo, cloud_api=api))
    return app


@pytest.fixture
async def h(engine: AsyncEngine) -> AsyncIterator[Harness]:
    a, b = f"a{uuid.uuid4().hex[:10]}", f"b{uuid.uuid4().hex[:10]}"
    numbers = [(_number(), f"tok-{uuid.uuid4().hex}", _number()) for _ in range(3)]
    numbers[2] = (numbers[2][0], numbers[2][1], numbers[0][2])  # the third number is in the first one's WABA
    # each number in a WABA of its own, as the simulator lists them at GET /{version}/{waba_id}/phone_numbers
    sim = create_app(SimulatorSettings(simulator_accounts=",".join(f"{n}:{t}:{n}:{w}" for n, t, w in numbers)))
    api = CloudApiClient(base_url="http://sim", version="v25.0", timeout=5.0, max_connections=4,
                         transport=httpx.ASGITransport(app=sim))
    cipher = TokenCipher([KEY])
    repo, log = AccountRepository(cipher), SendLog(cipher)
    keys = {"admin-a": (a, "admin"), "read-a": (a, "read"), "events-a": (a, "events"), "admin-b": (b, "admin")}
    app = _app(engine, repo, log, api, keys)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://sender") as client:
        yield Harness(client, engine, repo, log, cipher, a, b, numbers)
    await api.aclose()


# -- create, read ---------------------------------------------------------------------------------------------


async def test_an_account_is_created_listed_and_read_without_its_token(h: Harness) -> None:
    number, token, waba = h.numbers[0]
    resp = await h.call("POST", "/v1/accounts", json=h.body(marketing_per_hour=150))
    assert resp.status_code == 201, resp.text
    account = resp.json()
    assert account == {
        "account_id": number, "waba_id": waba, "display_name": "SCRM Simulator",  # the verified name
        "throughput_per_second": 80, "marketing_min_interval_s": 3.0, "marketing_max_interval_s": 5.0,
        "marketing_per_hour": 150, "new_account_per_day": 50, "new_account_days": 3,
        "registered_at": "2026-11-30T09:00:00Z", "created_at": "2026-11-30T09:00:00Z",
        "updated_at": "2026-11-30T09:00:00Z", "restrictions": []}
    listed = (await h.call("GET", "/v1/accounts", who="read-a")).json()
    assert listed == {"tenant": h.a, "accounts": [account]}
    assert (await h.call("GET", f"/v1/accounts/{number}", who="read-a")).json() == account
    # another tenant sees nothing of it
    assert (await h.call("GET", "/v1/accounts", who="admin-b")).json() == {"tenant": h.b, "accounts": []}
    assert (await h.call("GET", f"/v1/accounts/{number}", who="admin-b")).status_code == 404
    # at rest: encrypted under the first key
    row = await h.stored(number)
    assert row.token_encrypted and token not in row.access_token and h.cipher.decrypt(row.access_token) == token
    assert row.tenant == h.a
    # announced: account.registered keyed <tenant>:account:<id>, the owner in the tenant header
    [(key, event, headers)] = await h.events(h.a)
    assert key == f"{h.a}:account:{number}" and headers["tenant"] == h.a and headers["type"] == "account.registered"
    assert event["type"] == "account.registered" and "contact" not in event
    assert event["data"] == {"account_id": number, "waba_id": waba, "display_name": "SCRM Simulator",
                             "registered_at": "2026-11-30T09:00:00Z"}


async def test_a_number_belongs_to_one_tenant(h: Harness) -> None:
    number, _, waba = h.numbers[0]
    assert (await h.call("POST", "/v1/accounts", json=h.body(display_name="Shop A"))).status_code == 201
    taken = await h.call("POST", "/v1/accounts", who="admin-b", json=h.body())
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "account_taken"
    assert h.a not in taken.text and "Shop A" not in taken.text
    again = await h.call("POST", "/v1/accounts", json=h.body())
    assert (again.status_code, again.json()["error"]["code"]) == (409, "account_exists")
    # another number really in the first tenant's WABA (the provider lists it there): its templates are
    # that tenant's, so the WABA is told taken — only once the token proved number and WABA
    other = await h.call("POST", "/v1/accounts", who="admin-b", json=h.body(2))
    assert (other.status_code, other.json()["error"]["code"]) == (409, "account_taken"), other.text
    assert h.a not in other.text and "WABA" in other.json()["error"]["message"]
    assert (await h.call("GET", "/v1/accounts", who="admin-b")).json()["accounts"] == []
    assert (await h.stored(number)).tenant == h.a
    assert await h.events(h.b) == []


async def test_a_waba_is_proven_with_the_provider_so_no_tenant_claims_anothers(h: Harness) -> None:
    number_a, _, waba_a = h.numbers[0]
    number_b = h.numbers[1][0]
    # B names A's WABA with its own number and token, before A added anything: the provider does not list
    # B's number in that WABA (nor lets B's token see it): 422 on waba_id, nothing stored, nothing announced
    squat = await h.call("POST", "/v1/accounts", who="admin-b", json=h.body(1) | {"waba_id": waba_a})
    assert squat.status_code == 422, squat.text
    assert [e["field"] for e in squat.json()["errors"]] == ["body.waba_id"]
    assert "200" in squat.json()["errors"][0]["reason"] and waba_a in squat.json()["errors"][0]["reason"]
    assert await h.stored(number_b) is None and await h.events(h.b) == []
    # A then adds its own number with its WABA
    assert (await h.call("POST", "/v1/accounts", json=h.body(0))).status_code == 201
    assert (await h.stored(number_a)).tenant == h.a


async def test_a_waba_the_token_reaches_must_list_the_number(engine: AsyncEngine) -> None:
    # one token for two numbers, each in its own WABA: the token reaches both WABAs
    (n1, w1), (n2, w2) = (_number(), _number()), (_number(), _number())
    sim = create_app(SimulatorSettings(simulator_accounts=f"{n1}:shared-tok:{n1}:{w1},{n2}:shared-tok:{n2}:{w2}"))
    api = CloudApiClient(base_url="http://sim", version="v25.0", timeout=5.0, max_connections=2,
                         transport=httpx.ASGITransport(app=sim))
    cipher, tenant = TokenCipher([KEY]), f"w{uuid.uuid4().hex[:10]}"
    app = _app(engine, AccountRepository(cipher), SendLog(cipher), api, {"k": (tenant, "admin")})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sender") as client:
        auth = {"Authorization": "Bearer k"}
        stray = await client.post("/v1/accounts", headers=auth,
                                  json={"account_id": n1, "waba_id": w2, "access_token": "shared-tok"})
        assert stray.status_code == 422, stray.text
        [error] = stray.json()["errors"]
        assert error["field"] == "body.waba_id" and f"phone number {n1} is not in WABA {w2}" in error["reason"]
        ok = await client.post("/v1/accounts", headers=auth,
                               json={"account_id": n1, "waba_id": w1, "access_token": "shared-tok"})
        assert ok.status_code == 201, ok.text
        moved = await client.patch(f"/v1/accounts/{n1}", headers=auth, json={"waba_id": w2})
        assert moved.status_code == 422 and f"not in WABA {w2}" in moved.text
    await api.aclose()


async def test_patching_the_waba_or_the_token_proves_the_waba_with_the_provider(h: Harness) -> None:
    number_b, token_b, waba_b = h.numbers[1]
    waba_a = h.numbers[0][2]
    assert (await h.call("POST", "/v1/accounts", who="admin-b", json=h.body(1))).status_code == 201
    moved = await h.call("PATCH", f"/v1/accounts/{number_b}", who="admin-b", json={"waba_id": waba_a})
    assert moved.status_code == 422, moved.text
    assert [e["field"] for e in moved.json()["errors"]] == ["body.waba_id"]
    with_token = await h.call("PATCH", f"/v1/accounts/{number_b}", who="admin-b",
                              json={"waba_id": waba_a, "access_token": token_b})
    assert with_token.status_code == 422 and token_b not in with_token.text
    assert (await h.stored(number_b)).waba_id == waba_b
    # an account stored with a WABA that does not hold it (a row of an earlier release): a new token alone is
    # checked against it, and the right WABA, proven with the stored token, is taken
    async with h.engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET waba_id = :w WHERE account_id = :a"),
                           {"w": "42", "a": number_b})
    token_only = await h.call("PATCH", f"/v1/accounts/{number_b}", who="admin-b", json={"access_token": token_b})
    assert token_only.status_code == 422 and [e["field"] for e in token_only.json()["errors"]] == ["body.waba_id"]
    fixed = await h.call("PATCH", f"/v1/accounts/{number_b}", who="admin-b", json={"waba_id": waba_b})
    assert (fixed.status_code, fixed.json()["waba_id"]) == (200, waba_b), fixed.text
    # no key decrypts the stored token: a new WABA needs the token given with it
    async with h.engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET waba_id = '42', access_token = 'gAAAA-garbage' "
                                "WHERE account_id = :a"), {"a": number_b})
    unreadable = await h.call("PATCH", f"/v1/accounts/{number_b}", who="admin-b", json={"waba_id": waba_b})
    assert unreadable.status_code == 422 and [e["field"] for e in unreadable.json()["errors"]] == ["body.access_token"]
    both = await h.call("PATCH", f"/v1/accounts/{number_b}", who="admin-b",
                        json={"waba_id": waba_b, "access_token": token_b})
    assert both.status_code == 200, both.text
    assert h.cipher.decrypt((await h.stored(number_b)).access_token) == token_b


async def test_no_conflict_is_told_before_the_token_proved_number_and_waba(h: Harness) -> None:
    number_a, _, waba_a = h.numbers[0]
    assert (await h.call("POST", "/v1/accounts", json=h.body(0))).status_code == 201
    # probing A's number with no working token: 422, never 409 account_taken
    probe = await h.call("POST", "/v1/accounts", who="admin-b", json=h.body(0) | {"access_token": "not-a-real-token"})
    assert probe.status_code == 422 and probe.json()["error"]["code"] == "provider_refused", probe.text
    # probing A's WABA with B's own number: 422 (the WABA is not B's), never 409
    probe = await h.call("POST", "/v1/accounts", who="admin-b", json=h.body(1) | {"waba_id": waba_a})
    assert probe.status_code == 422 and "taken" not in probe.text and "another tenant" not in probe.text
    # the same for a PATCH of B's account naming A's WABA
    assert (await h.call("POST", "/v1/accounts", who="admin-b", json=h.body(1))).status_code == 201
    probe = await h.call("PATCH", f"/v1/accounts/{h.numbers[1][0]}", who="admin-b", json={"waba_id": waba_a})
    assert probe.status_code == 422 and "another tenant" not in probe.text


async def test_an_account_update_event_never_moves_a_waba_to_a_tenant_that_does_not_own_it(h: Harness) -> None:
    waba_a = h.numbers[0][2]
    number_b = h.numbers[1][0]
    assert (await h.call("POST", "/v1/accounts", json=h.body(0))).status_code == 201
    async with h.engine.begin() as conn:  # B's account without a WABA yet (a row of an earlier release)
        await h.repo.create(conn, h.b, NewAccount(number_b, None, None, "t", AccountPolicy(), NOW), NOW)
    for waba, kept in ((waba_a, None), ("31337", "31337"), (waba_a, "31337")):
        async with h.engine.begin() as conn:
            assert await h.log.accounts_addressed(conn, h.b, number_b, waba) == [number_b]
        assert (await h.stored(number_b)).waba_id == kept, waba
    async with h.engine.connect() as conn:  # A's WABA still lists A's account alone
        assert await h.log.accounts_addressed(conn, h.a, None, waba_a) == [h.numbers[0][0]]


# -- bad input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field"), [
    ({"throughput_per_second": 100}, "body.throughput_per_second"),
    ({"marketing_min_interval_s": 0.001}, "body.marketing_min_interval_s"),  # faster than 80/s
    ({"marketing_min_interval_s": -3}, "body.marketing_min_interval_s"),
    ({"marketing_max_interval_s": 2}, "body.marketing_max_interval_s"),  # below the 3 s minimum
    ({"marketing_per_hour": 80 * 3600 + 1}, "body.marketing_per_hour"),
    ({"new_account_per_day": 251}, "body.new_account_per_day"),
    ({"new_account_days": -1}, "body.new_account_days"),
    ({"registered_at": "2026-12-01T09:00:00Z"}, "body.registered_at"),  # in the future
    ({"registered_at": "yesterday"}, "body.registered_at"),
    ({"account_id": "not-digits"}, "body.account_id"),
    ({"waba_id": None}, "body.waba_id"),
    ({"access_token": ""}, "body.access_token"),
    ({"access_token": "two words"}, "body.access_token"),
    ({"display_name": "bad\u0000name"}, "body.display_name"),
    ({"colour": "blue"}, "body.colour"),
    ({"access_token": "wrong-token"}, "body.access_token"),  # the simulator answers 190
    ({"account_id": "19999999999999"}, "body.account_id"),  # no such number for this token: 100
])
async def test_a_bad_field_is_a_422_naming_it_and_nothing_is_stored(h: Harness, change: dict[str, Any],
                                                                    field: str) -> None:
    resp = await h.call("POST", "/v1/accounts", json=h.body() | change)
    assert resp.status_code == 422, resp.text
    errors = resp.json()["errors"]
    assert [e["field"] for e in errors] == [field], errors
    assert errors[0]["reason"]
    assert (await h.call("GET", "/v1/accounts")).json()["accounts"] == []
    assert await h.events(h.a) == []


async def test_a_refused_token_carries_the_providers_reason(h: Harness) -> None:
    resp = await h.call("POST", "/v1/accounts", json=h.body(access_token="wrong-token"))
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"]["code"] == "provider_refused"
    [error] = body["errors"]
    assert error["field"] == "body.access_token"
    assert "190" in error["reason"] and "access token" in error["reason"]
    # a token valid for another number is refused for this one, with the provider's words
    other_token = h.numbers[1][1]
    resp = await h.call("POST", "/v1/accounts", json=h.body(access_token=other_token))
    assert resp.status_code == 422 and other_token not in resp.text
    assert f"not valid for phone number ID {h.numbers[0][0]}" in resp.json()["errors"][0]["reason"]


async def test_every_field_at_fault_is_named_at_once(h: Harness) -> None:
    resp = await h.call("POST", "/v1/accounts", json=h.body(
        marketing_min_interval_s=10, marketing_max_interval_s=5, new_account_per_day=300, new_account_days=400))
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == [
        "body.marketing_max_interval_s", "body.new_account_per_day", "body.new_account_days"]


async def test_an_unreachable_provider_is_a_503_and_nothing_is_stored(engine: AsyncEngine) -> None:
    def down(_request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    api = CloudApiClient(base_url="http://sim", version="v25.0", timeout=1.0, max_connections=1,
                         transport=httpx.MockTransport(down))
    tenant = f"c{uuid.uuid4().hex[:10]}"
    cipher = TokenCipher([KEY])
    app = _app(engine, AccountRepository(cipher), SendLog(cipher), api, {"k": (tenant, "admin")})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sender") as client:
        number = _number()
        resp = await client.post("/v1/accounts", headers={"Authorization": "Bearer k"},
                                 json={"account_id": number, "waba_id": _number(), "access_token": "t"})
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "provider_unavailable"
        assert (await client.get("/v1/accounts", headers={"Authorization": "Bearer k"})).json()["accounts"] == []


# -- change, remove -------------------------------------------------------------------------------------------


async def test_patch_changes_only_the_fields_given_checked_against_the_stored_ones(h: Harness) -> None:
    number = h.numbers[0][0]
    assert (await h.call("POST", "/v1/accounts", json=h.body(throughput_per_second=1000,
                                                            marketing_min_interval_s=0.002,
                                                            marketing_max_interval_s=0.004))).status_code == 201
    # lowering the tier under the stored interval: the tier is named, nothing changes
    resp = await h.call("PATCH", f"/v1/accounts/{number}", json={"throughput_per_second": 80})
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == ["body.throughput_per_second"]
    resp = await h.call("PATCH", f"/v1/accounts/{number}", json={
        "throughput_per_second": 80, "marketing_min_interval_s": 4, "marketing_max_interval_s": 6,
        "display_name": "Shop A", "registered_at": "2026-11-29T00:00:00Z"})
    assert resp.status_code == 200, resp.text
    account = resp.json()
    assert (account["throughput_per_second"], account["marketing_min_interval_s"], account["display_name"],
            account["registered_at"]) == (80, 4.0, "Shop A", "2026-11-29T00:00:00Z")
    assert account["marketing_per_hour"] == 200 and account["updated_at"] == "2026-11-30T09:00:00Z"
    # every change is announced, with the new data
    events = await h.events(h.a)
    assert [e["type"] for _, e, _ in events] == ["account.registered", "account.registered"]
    assert events[-1][1]["data"]["display_name"] == "Shop A"
    assert events[-1][1]["data"]["registered_at"] == "2026-11-29T00:00:00Z"
    # display_name may be cleared; other fields may not be null
    cleared = await h.call("PATCH", f"/v1/accounts/{number}", json={"display_name": None})
    assert cleared.status_code == 200 and cleared.json()["display_name"] is None
    for body, named in (({"marketing_per_hour": None}, "body.marketing_per_hour"),
                        ({"account_id": "1"}, "body.account_id"), ({"nope": 1}, "body.nope"),
                        ({"access_token": "wrong"}, "body.access_token")):
        resp = await h.call("PATCH", f"/v1/accounts/{number}", json=body)
        assert resp.status_code == 422 and [e["field"] for e in resp.json()["errors"]] == [named], resp.text
    assert (await h.call("GET", f"/v1/accounts/{number}")).json() == cleared.json()
    # another tenant's account, or none: 404
    assert (await h.call("PATCH", f"/v1/accounts/{number}", who="admin-b", json={"display_name": "x"})).status_code == 404
    assert (await h.call("PATCH", "/v1/accounts/123", json={"display_name": "x"})).status_code == 404


async def test_a_new_token_is_checked_and_stored_encrypted(h: Harness) -> None:
    number, token, _ = h.numbers[0]
    assert (await h.call("POST", "/v1/accounts", json=h.body())).status_code == 201
    before = (await h.stored(number)).access_token
    resp = await h.call("PATCH", f"/v1/accounts/{number}", json={"access_token": token})
    assert resp.status_code == 200 and token not in resp.text
    after = await h.stored(number)
    assert after.access_token != before and h.cipher.decrypt(after.access_token) == token


def _command(tenant: str, account_id: str, key: str) -> str:
    return json.dumps({
        "idempotency_key": key, "tenant": tenant, "account_id": account_id, "flow": "order_confirmation",
        "category": "utility", "contact_key": "c-1", "to": "+4915112345678", "text": "hi", "event_id": "e-1",
        "event_occurred_at": "2026-11-30T09:00:00Z", "decided_at": "2026-11-30T09:00:00Z"})


async def test_delete_fails_the_queued_messages_announces_the_removal_and_frees_the_number(h: Harness) -> None:
    number = h.numbers[0][0]
    assert (await h.call("POST", "/v1/accounts", json=h.body())).status_code == 201
    async with h.engine.begin() as conn:
        await h.log.record(conn, [{
            "tenant": h.a, "idempotency_key": key, "account_id": number, "flow": "order_confirmation",
            "category": "utility", "contact_key": "c-1", "to_phone": "+4915112345678",
            "command": _command(h.a, number, key), "state": state, "next_attempt_at": NOW, "queued_at": NOW,
            "event_ingested_at": None, "error_reason": None} for key, state in (("q1", "queued"), ("s1", "failed"))])
    assert (await h.call("DELETE", f"/v1/accounts/{number}", who="admin-b")).status_code == 404
    resp = await h.call("DELETE", f"/v1/accounts/{number}")
    assert resp.status_code == 204
    async with h.engine.connect() as conn:
        queued = await h.log.message(conn, h.a, "q1")
    assert queued is not None and (queued["state"], queued["error_reason"]) == ("failed", "account removed")
    assert (await h.call("GET", f"/v1/accounts/{number}")).status_code == 404
    assert (await h.call("DELETE", f"/v1/accounts/{number}")).status_code == 404
    events = [(e["type"], e["data"]) for _, e, _ in await h.events(h.a)]
    assert events[1:] == [
        ("account.removed", {"account_id": number, "waba_id": h.numbers[0][2], "display_name": "SCRM Simulator",
                             "registered_at": "2026-11-30T09:00:00Z"}),
        ("message.status", events[2][1])]
    assert (events[2][1]["status"], events[2][1]["error_reason"], events[2][1]["idempotency_key"]) == (
        "failed", "account removed", "q1")
    # now another tenant may claim it
    assert (await h.call("POST", "/v1/accounts", who="admin-b", json=h.body())).status_code == 201


# -- roles ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["read-a", "events-a"])
async def test_only_an_admin_key_changes_anything(h: Harness, who: str) -> None:
    number = h.numbers[0][0]
    assert (await h.call("POST", "/v1/accounts", json=h.body())).status_code == 201
    before = (await h.call("GET", f"/v1/accounts/{number}")).json()
    for method, path, body in (("POST", "/v1/accounts", h.body(1)),
                               ("PATCH", f"/v1/accounts/{number}", {"marketing_per_hour": 10}),
                               ("DELETE", f"/v1/accounts/{number}", None),
                               ("DELETE", "/v1/invalid-numbers/%2B4915112345678", None)):
        resp = await h.call(method, path, who=who, json=body)
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["error"] == {"code": "forbidden", "message": f"a key with role '{who[:-2]}' may not do "
                                                                        "this; it needs role 'admin'"}
    assert (await h.call("GET", f"/v1/accounts/{number}")).json() == before
    assert len(await h.events(h.a)) == 1
    reads = [("GET", "/v1/accounts"), ("GET", f"/v1/accounts/{number}"), ("GET", "/v1/messages"),
             ("GET", "/v1/invalid-numbers")]
    for method, path in reads:
        assert (await h.call(method, path, who=who)).status_code == (200 if who == "read-a" else 403), path
    assert (await h.call("GET", "/v1/accounts", who="nobody")).status_code == 401


def test_every_route_declares_its_roles(engine: AsyncEngine) -> None:
    cipher = TokenCipher([KEY])
    api = CloudApiClient(base_url="http://sim", version="v25.0", timeout=1.0, max_connections=1)
    schema = _app(engine, AccountRepository(cipher), SendLog(cipher), api, {}).openapi()
    roles = {(path, method): op[ROLES_EXTENSION] for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert roles == {
        ("/v1/accounts", "get"): ["read", "admin"], ("/v1/accounts", "post"): ["admin"],
        ("/v1/accounts/{account_id}", "get"): ["read", "admin"], ("/v1/accounts/{account_id}", "patch"): ["admin"],
        ("/v1/accounts/{account_id}", "delete"): ["admin"], ("/v1/messages", "get"): ["read", "admin"],
        ("/v1/messages/{idempotency_key}", "get"): ["read", "admin"], ("/v1/invalid-numbers", "get"): ["read", "admin"],
        ("/v1/invalid-numbers/{phone}", "delete"): ["admin"]}
    create = schema["paths"]["/v1/accounts"]["post"]
    assert {"201", "403", "409", "422", "503"} <= set(create["responses"])
    assert "access_token" not in json.dumps(schema["components"]["schemas"]["AccountRead"])


# -- tokens never leave ---------------------------------------------------------------------------------------


async def test_a_token_is_in_no_response_and_no_log_line(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    number, token, _ = h.numbers[0]
    await h.call("POST", "/v1/accounts", json=h.body(access_token="refused-token-secret-1"))
    await h.call("POST", "/v1/accounts", json=h.body(access_token="bad token secret 2"))
    await h.call("POST", "/v1/accounts", json=h.body())
    await h.call("PATCH", f"/v1/accounts/{number}", json={"access_token": token})
    await h.call("PATCH", f"/v1/accounts/{number}", json={"access_token": "refused-token-secret-3"})
    await h.call("GET", "/v1/accounts")
    await h.call("DELETE", f"/v1/accounts/{number}")
    assert len(h.responses) == 7 and caplog.records
    for secret in (token, "refused-token-secret-1", "bad token secret 2", "refused-token-secret-3"):
        assert not [r for r in h.responses if secret in r], secret
        assert secret not in caplog.text, secret
        for record in caplog.records:
            assert secret not in json.dumps(record.__dict__, default=str), secret
    for _, event, _ in await h.events(h.a):
        assert token not in json.dumps(event)


# -- at rest: rotation, earlier releases' rows, unreadable tokens -----------------------------------------------


async def test_start_encrypts_plain_rows_and_reencrypts_old_ones_under_the_first_key(engine: AsyncEngine) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    tenant = f"r{uuid.uuid4().hex[:10]}"
    plain_id, old_id, lost_id = _number(), _number(), _number()
    async with engine.begin() as conn:
        # a row of an earlier release (plain token), one under the old key, one under a key nobody has
        await SendLog().bootstrap(conn, tenant=tenant, account_id=plain_id, access_token="plain-tok", throughput=80.0,
                                  created_at=NOW)
        await AccountRepository(TokenCipher([old])).create(conn, tenant, NewAccount(
            old_id, None, None, "old-tok", AccountPolicy(), NOW), NOW)
        await AccountRepository(TokenCipher([Fernet.generate_key()])).create(conn, tenant, NewAccount(
            lost_id, None, None, "lost-tok", AccountPolicy(), NOW), NOW)
    rotating = AccountRepository(TokenCipher([new, old]))
    async with engine.begin() as conn:
        secured = await rotating.secure_tokens(conn, NOW)
    assert (secured.encrypted, secured.rotated) >= (1, 1)
    assert (tenant, lost_id) in secured.unreadable
    only_new = TokenCipher([new])
    async with engine.connect() as conn:
        rows = {r.account_id: r for r in (await conn.execute(text(
            "SELECT account_id, access_token, token_encrypted FROM accounts WHERE tenant = :t"), {"t": tenant}))}
        restrictions = await SendLog().restrictions(conn, tenant, lost_id, NOW)
    assert rows[plain_id].token_encrypted and only_new.decrypt(rows[plain_id].access_token) == "plain-tok"
    assert only_new.decrypt(rows[old_id].access_token) == "old-tok"
    # the unreadable one waits, restricted, and its dispatcher token is empty; a new token lifts it
    assert [r.kind for r in restrictions] == [TOKEN_UNREADABLE]
    log = SendLog(TokenCipher([new, old]))
    async with engine.begin() as conn:
        account = await log.lock_account(conn, tenant, lost_id)
        assert account is not None and account.access_token == ""
        await rotating.update(conn, tenant, lost_id, {"access_token": "fresh-tok"}, NOW)
        assert await log.restrictions(conn, tenant, lost_id, NOW) == []
        account = await log.lock_account(conn, tenant, lost_id)
        assert account is not None and account.access_token == "fresh-tok"
    # a second start has nothing left to do for these rows
    async with engine.begin() as conn:
        again = await rotating.secure_tokens(conn, NOW)
    assert (tenant, lost_id) not in again.unreadable


# -- registered_at drives R-S3's new-account protection --------------------------------------------------------


async def test_new_account_protection_counts_from_registered_at(h: Harness) -> None:
    number = h.numbers[0][0]
    resp = await h.call("POST", "/v1/accounts", json=h.body(registered_at="2026-11-29T09:00:00Z"))
    assert resp.status_code == 201
    async with h.engine.begin() as conn:
        account = await h.log.lock_account(conn, h.a, number)
    assert account is not None and account.registered_at == datetime(2026, 11, 29, 9, tzinfo=UTC)
    assert account.access_token == h.numbers[0][1]
    fresh = PacingState(None, 80.0, NOW)

    def marketing(now: datetime) -> int:
        assert account is not None
        return allowance(account.policy, fresh, now, registered_at=account.registered_at, marketing_last_hour=0,
                         marketing_last_day=49).marketing

    assert marketing(NOW) == 0  # day 2 of 3: under 50 a day
    assert marketing(NOW + timedelta(days=2)) == 1  # protection over


# -- the bootstrap account goes through the same repository --------------------------------------------------


async def test_bootstrap_creates_once_keeps_api_changes_and_never_moves_another_tenants_number(
        h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    number, token, waba = h.numbers[0]
    registered = datetime(2026, 11, 1, tzinfo=UTC)
    new = NewAccount(number, waba, None, token, AccountPolicy(), registered)
    async with h.engine.begin() as conn:
        assert await h.repo.bootstrap(conn, h.a, new, NOW) == "created"
    assert (await h.call("PATCH", f"/v1/accounts/{number}", json={"marketing_per_hour": 120})).status_code == 200
    async with h.engine.begin() as conn:
        assert await h.repo.bootstrap(conn, h.a, new, NOW + timedelta(days=1)) == "unchanged"
        assert await h.repo.bootstrap(conn, h.a, NewAccount(number, waba, None, "rotated-tok", AccountPolicy(),
                                                            NOW), NOW) == "updated"
    account = (await h.call("GET", f"/v1/accounts/{number}")).json()
    assert account["marketing_per_hour"] == 120 and account["registered_at"] == "2026-11-01T00:00:00Z"
    assert h.cipher.decrypt((await h.stored(number)).access_token) == "rotated-tok"
    # another bootstrap tenant naming the same number: refused, logged, nothing moves
    caplog.set_level(logging.ERROR)
    async with h.engine.begin() as conn:
        assert await h.repo.bootstrap(conn, h.b, new, NOW) == "taken"
    assert (await h.stored(number)).tenant == h.a
    assert "belongs to another tenant" in caplog.text and "rotated-tok" not in caplog.text
    assert [e["type"] for _, e, _ in await h.events(h.a)] == ["account.registered"] * 3
    assert await h.events(h.b) == []


async def test_the_environment_is_applied_only_when_it_changed_so_api_changes_survive_restarts(h: Harness) -> None:
    number, waba = _number(), _number()

    async def start(token: str, env_waba: str) -> tuple[str, str, str]:
        """A sender start with this environment: the outcome, the stored token and WABA."""
        async with h.engine.begin() as conn:
            outcome = await h.repo.bootstrap(conn, h.a, NewAccount(number, env_waba, None, token, AccountPolicy(),
                                                                   NOW), NOW)
        row = await h.stored(number)
        return outcome, h.cipher.decrypt(row.access_token), row.waba_id

    assert await start("env-tok-1", waba) == ("created", "env-tok-1", waba)
    row = await h.stored(number)
    assert row.bootstrap_token_sha256 and "env-tok-1" not in row.bootstrap_token_sha256
    async with h.engine.begin() as conn:  # the tenant admin rotates the token and moves the WABA (PATCH)
        await h.repo.update(conn, h.a, number, {"access_token": "api-tok", "waba_id": "7007"}, NOW)
    assert await start("env-tok-1", waba) == ("unchanged", "api-tok", "7007")  # restarts keep them
    assert await start("env-tok-1", waba) == ("unchanged", "api-tok", "7007")
    # the operator changes the environment's token: applied once; its WABA, unchanged there, stays the API's
    assert await start("env-tok-2", waba) == ("updated", "env-tok-2", "7007")
    assert await start("env-tok-2", "8008") == ("updated", "env-tok-2", "8008")
    assert await start("env-tok-2", "8008") == ("unchanged", "env-tok-2", "8008")
    # a row of a release before this was remembered: the environment is applied once, as every start did
    async with h.engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET bootstrap_token_sha256 = NULL, bootstrap_waba_id = NULL "
                                "WHERE account_id = :a"), {"a": number})
        await h.repo.update(conn, h.a, number, {"access_token": "api-tok"}, NOW)
    assert await start("env-tok-2", "8008") == ("updated", "env-tok-2", "8008")
    assert await start("env-tok-2", "8008") == ("unchanged", "env-tok-2", "8008")


async def test_accounts_of_earlier_releases_are_announced_once(engine: AsyncEngine) -> None:
    tenant = f"e{uuid.uuid4().hex[:10]}"
    number = _number()
    async with engine.begin() as conn:
        await SendLog().bootstrap(conn, tenant=tenant, account_id=number, access_token="t", throughput=80.0,
                                  created_at=NOW, waba_id="2001")
        repo = AccountRepository(TokenCipher([KEY]))
        assert await repo.announce(conn, NOW) >= 1
        assert await repo.announce(conn, NOW) == 0
        rows = (await conn.execute(text("SELECT key, value FROM outbox WHERE key = :k"),
                                   {"k": f"{tenant}:account:{number}".encode()})).all()
    assert [json.loads(bytes(r.value))["data"]["waba_id"] for r in rows] == ["2001"]
