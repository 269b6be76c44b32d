"""Templates synced from the Cloud API's management endpoint (issue 7, item 3) against the real PostgreSQL and
the simulator in-process: every page read, rate limits waited out within a budget, templates no longer listed
marked DELETED, `GET /v1/templates` isolated per tenant and `POST /v1/templates/sync` for admin keys only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.db import make_engine, migrate
from scrm_common.http import KeyIntrospection, install_error_handlers
from sender.adapters.cloud_api import CloudApiClient
from sender.adapters.templates import Backoff, TemplateStore, TemplateSync, account_tokens
from sender.adapters.templates_http import build_templates_router
from sender.main import MIGRATIONS, SCHEMA
from whatsapp_sim.app import create_app
from whatsapp_sim.config import SimulatorSettings
from whatsapp_sim.domain.templates import TemplateCatalog
from whatsapp_sim.simulator import Simulator, load_catalog

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WABA_A, WABA_B = "200000000000001", "200000000000002"
CATALOG = sorted((t.name, t.language) for t in load_catalog(SimulatorSettings()).all())
# key → (tenant, role), as ingest's introspection answers
KEYS = {"admin-a": ("acme", "admin"), "read-a": ("acme", "read"), "events-a": ("acme", "events"),
        "admin-b": ("bolt", "admin"), "read-b": ("bolt", "read")}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Recording(httpx.AsyncBaseTransport):
    """The simulator app in-process, remembering each URL asked."""

    def __init__(self, app: Any, seen: list[httpx.URL]) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self._seen = seen

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._seen.append(request.url)
        return await self._inner.handle_async_request(request)


@dataclass
class World:
    client: httpx.AsyncClient
    sim: Simulator
    engine: AsyncEngine
    sleeps: list[float]
    listings: list[httpx.URL] = field(default_factory=list)

    async def templates(self, key: str, **params: Any) -> list[dict[str, Any]]:
        resp = await self.client.get("/v1/templates", params=params, headers=bearer(key))
        assert resp.status_code == 200, resp.text
        return resp.json()["templates"]

    async def sync(self, key: str = "admin-a", body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post("/v1/templates/sync", json=body, headers=bearer(key))


@pytest.fixture
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=2)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    async with engine.begin() as conn:
        for tenant, account, waba, token in (("acme", "100000000000001", WABA_A, "sim-token"),
                                             ("bolt", "100000000000002", WABA_B, "sim-token-2"),
                                             ("bolt", "100000000000009", None, "no-waba")):
            await conn.execute(text("INSERT INTO accounts(tenant, account_id, access_token, waba_id, created_at) "
                                    "VALUES (:t, :a, :tok, :w, :now)"),
                               {"t": tenant, "a": account, "tok": token, "w": waba, "now": NOW})
    yield engine
    await engine.dispose()


async def world(engine: AsyncEngine, *, rate_limited: int = 0, attempts: int = 3) -> AsyncIterator[World]:
    sim_app = create_app(SimulatorSettings(simulator_rate_limit_templates=rate_limited, simulator_seed=1))
    sim: Simulator = sim_app.state.simulator
    sleeps: list[float] = []
    listings: list[httpx.URL] = []

    async def introspect(request: httpx.Request) -> httpx.Response:
        key = json.loads(request.content)["api_key"]
        if key not in KEYS:
            return httpx.Response(404)
        tenant, role = KEYS[key]
        return httpx.Response(200, json={"tenant": tenant, "role": role, "key_id": f"key_{key}"})

    api = CloudApiClient(base_url="http://sim", version="v25.0", timeout=5.0, max_connections=4)
    # the test's transport: the simulator in-process (the client's own pool would dial a real port)
    await api._client.aclose()
    api._client = httpx.AsyncClient(base_url="http://sim", transport=Recording(sim_app, listings))

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    sync = TemplateSync(engine=engine, client=api, clock=FixedClock(NOW), targets=account_tokens(lambda s: s),
                        page_size=3, backoff=Backoff(attempts=attempts, base_s=1.0, cap_s=4.0), sleep=sleep)
    keys = KeyIntrospection("http://ingest", internal_token="t", ttl_seconds=0.001,
                            client=httpx.AsyncClient(transport=httpx.MockTransport(introspect)))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_templates_router(engine=engine, keys=keys, sync=sync))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sender") as client:
        yield World(client, sim, engine, sleeps, listings)
    await api.aclose()
    await keys.aclose()


@pytest.fixture
async def w(engine: AsyncEngine) -> AsyncIterator[World]:
    async for built in world(engine):
        yield built


async def test_a_sync_reads_every_page_and_stores_each_template_with_its_components(w: World) -> None:
    resp = await w.sync(body={"account_id": "100000000000001"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"synced": len(CATALOG), "accounts": [
        {"account_id": "100000000000001", "waba_id": WABA_A, "templates": len(CATALOG)}]}
    pages = [u for u in w.listings if u.path.endswith("/message_templates")]
    assert len(pages) == -(-len(CATALOG) // 3)  # limit 3: every page, no more
    assert all(u.params["limit"] == "3" and "components" in u.params["fields"] for u in pages)
    assert [u.params.get("after") is None for u in pages] == [True] + [False] * (len(pages) - 1)

    stored = await w.templates("read-a")
    assert sorted((t["name"], t["language"]) for t in stored) == CATALOG
    order = next(t for t in stored if (t["name"], t["language"]) == ("order_confirmation", "de"))
    assert (order["waba_id"], order["account_ids"], order["status"], order["category"], order["quality"]) == (
        WABA_A, ["100000000000001"], "APPROVED", "utility", "GREEN")
    assert order["template_id"] and order["template_id"].isdigit()
    assert order["components"] == [{"type": "BODY", "text": w.sim.catalogs[WABA_A].get("order_confirmation",
                                                                                      "de").body}]
    assert order["synced_at"] is not None
    # header, footer and a URL button with a variable come through as Meta lists them
    shipped = next(t for t in stored if (t["name"], t["language"]) == ("order_shipped", "en_US"))
    assert shipped["components"] == [
        {"type": "HEADER", "format": "TEXT", "text": "Order {{1}} shipped"},
        {"type": "BODY", "text": "Hi {{1}}, your order {{2}} is on its way and arrives {{3}}."},
        {"type": "FOOTER", "text": "Questions? Just reply to this message."},
        {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track parcel", "url": "https://track.example/{{1}}"}]}]
    # tenant bolt synced nothing yet: its WABA has no templates
    assert await w.templates("read-b") == []


async def test_a_sync_of_every_account_skips_the_one_without_a_waba_and_counts_each_waba_once(w: World) -> None:
    resp = await w.sync("admin-b")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"synced": len(CATALOG), "accounts": [
        {"account_id": "100000000000002", "waba_id": WABA_B, "templates": len(CATALOG)}]}
    resp = await w.sync("admin-b", {"account_id": "100000000000009"})
    assert (resp.status_code, resp.json()["error"]["code"]) == (422, "no_waba")


async def test_templates_no_longer_listed_are_marked_deleted_and_a_resync_brings_them_back(w: World) -> None:
    assert (await w.sync()).status_code == 200
    full = w.sim.catalogs[WABA_A]
    w.sim.catalogs[WABA_A] = TemplateCatalog(t for t in full.all() if t.name != "promo_announcement")
    assert (await w.sync()).json()["synced"] == len(CATALOG) - 2
    deleted = await w.templates("read-a", status="deleted")
    assert sorted((t["name"], t["language"]) for t in deleted) == [("promo_announcement", "de"),
                                                                     ("promo_announcement", "en_US")]
    w.sim.catalogs[WABA_A] = full
    assert (await w.sync()).json()["synced"] == len(CATALOG)
    assert await w.templates("read-a", status="DELETED") == []


async def test_a_webhook_during_the_listing_is_newer_than_the_listing(w: World) -> None:
    """A status a webhook set after the sync began is kept; the next sync takes the provider's."""
    assert (await w.sync()).status_code == 200
    later = datetime(2026, 12, 1, 9, 0, 5, tzinfo=UTC)
    async with w.engine.begin() as conn:
        changed = await TemplateStore().apply_update(
            conn, tenant="acme", waba_id=WABA_A, name="welcome", language="de", status="PAUSED", quality=None,
            category=None, reason=None, at=later)
    assert changed == 1
    assert (await w.sync()).status_code == 200  # its clock still says 09:00:00: the listing began before
    [welcome] = await w.templates("read-a", name="welcome", language="de")
    assert welcome["status"] == "PAUSED"


async def test_rate_limits_are_waited_out_within_the_budget(engine: AsyncEngine) -> None:
    async for w in world(engine, rate_limited=2, attempts=3):
        resp = await w.sync()
        assert resp.status_code == 200, resp.text
        assert resp.json()["synced"] == len(CATALOG)
        assert len(w.sleeps) == 2 and 0.5 <= w.sleeps[0] <= 1.0 and 1.0 <= w.sleeps[1] <= 2.0


async def test_a_rate_limit_past_the_budget_is_a_503_with_the_reason_and_changes_nothing(
        engine: AsyncEngine) -> None:
    async for w in world(engine, rate_limited=3, attempts=3):
        resp = await w.sync()
        assert resp.status_code == 503
        error = resp.json()["error"]
        assert error["code"] == "provider_unavailable" and "80007" in error["message"] and "3 times" in error["message"]
        assert len(w.sleeps) == 2
        assert await w.templates("read-a") == []


async def test_a_token_the_provider_refuses_is_a_422_with_its_reason(w: World) -> None:
    async with w.engine.begin() as conn:
        await conn.execute(text("UPDATE accounts SET access_token = 'revoked' WHERE account_id = '100000000000001'"))
    resp = await w.sync()
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "provider_refused" and "(190)" in error["message"]
    assert w.sleeps == []  # a refusal is not retried


async def test_each_tenant_sees_only_its_own_wabas_templates(w: World) -> None:
    assert (await w.sync("admin-a")).status_code == 200
    assert (await w.sync("admin-b")).status_code == 200
    mine = await w.templates("read-b")
    assert {t["waba_id"] for t in mine} == {WABA_B} and len(mine) == len(CATALOG)
    assert all(t["account_ids"] == ["100000000000002"] for t in mine)
    # another tenant's account: an empty list, never its templates; syncing it is a 404
    assert await w.templates("read-b", account_id="100000000000001") == []
    resp = await w.sync("admin-b", {"account_id": "100000000000001"})
    assert (resp.status_code, resp.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(("params", "expected"), [
    ({"name": "welcome"}, [("welcome", "de"), ("welcome", "en_US")]),
    ({"name": "welcome", "language": "de"}, [("welcome", "de")]),
    ({"category": "UTILITY"}, [("order_confirmation", "de"), ("order_confirmation", "en_US"),
                               ("order_security_notice", "de"), ("order_security_notice", "en_US"),
                               ("order_shipped", "de"), ("order_shipped", "en_US"),
                               ("shipment_update", "de"), ("shipment_update", "en_US")]),
    ({"status": "approved", "name": "welcome_generic"}, [("welcome_generic", "de"), ("welcome_generic", "en_US")]),
    ({"status": "PAUSED"}, []),
    ({"account_id": "100000000000001", "language": "de", "category": "utility"},
     [("order_confirmation", "de"), ("order_security_notice", "de"), ("order_shipped", "de"),
      ("shipment_update", "de")]),
])
async def test_filters(w: World, params: dict[str, str], expected: list[tuple[str, str]]) -> None:
    assert (await w.sync()).status_code == 200
    assert [(t["name"], t["language"]) for t in await w.templates("read-a", **params)] == expected


@pytest.mark.parametrize(("method", "path", "key", "body", "status"), [
    ("POST", "/v1/templates/sync", "read-a", None, 403),
    ("POST", "/v1/templates/sync", "events-a", None, 403),
    ("GET", "/v1/templates", "events-a", None, 403),
    ("GET", "/v1/templates", "unknown", None, 401),
    ("POST", "/v1/templates/sync", "admin-a", {"account_id": "100000000000001", "extra": 1}, 422),
    ("POST", "/v1/templates/sync", "admin-a", {"account_id": ""}, 422),
    ("GET", "/v1/templates?name=a%01b", "read-a", None, 422),
])
async def test_roles_and_bad_input_change_nothing(w: World, method: str, path: str, key: str,
                                                  body: dict[str, Any] | None, status: int) -> None:
    resp = await w.client.request(method, path, json=body, headers=bearer(key))
    assert resp.status_code == status, resp.text
    assert w.listings == []  # the provider was never asked
    async with w.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM templates"))).scalar() == 0
