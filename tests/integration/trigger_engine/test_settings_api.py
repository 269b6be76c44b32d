"""Flow and tenant settings against the real PostgreSQL: the API (PUT replaces, PATCH merges, history, one fault
per field and nothing changed, roles, isolation between tenants), the accounts projection, and the version check
that makes a change govern the next batch of every engine instance sharing the database."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, parse_event
from scrm_common.db import make_engine, migrate
from scrm_common.http import INTERNAL_TOKEN_HEADER, KeyIntrospection, service_app
from scrm_common.kafka.consumer import Item
from tests.unit.trigger_engine.factories import PHONE, T0, payment
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.http import build_router
from trigger_engine.adapters.settings_db import SettingsRepository
from trigger_engine.adapters.settings_http import build_settings_router
from trigger_engine.configuration import Bootstrap, SettingsService, TenantConfigs
from trigger_engine.domain.order_confirmation import OrderConfirmationSettings
from trigger_engine.domain.settings import TenantSettings
from trigger_engine.handlers import EngineMetrics, EventHandler
from trigger_engine.main import MIGRATIONS, SCHEMA

NOW = T0 + timedelta(seconds=30)
FLOW = "order_confirmation"
DEFAULTS = TenantSettings(tracking_url="https://install.example/t/{order_id}")
BOOTSTRAP_ACCOUNT = "100000000000001"


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=8)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


@dataclass
class Tenant:
    name: str

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.name}:{role}"}

    def key_id(self, role: str) -> str:
        return f"key_{self.name}_{role}"


def _ingest() -> httpx.AsyncClient:
    """Key introspection as ingest answers it: the key `<tenant>:<role>` is that tenant's key with that role."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers.get(INTERNAL_TOKEN_HEADER) == "internal"
        tenant, _, role = json.loads(request.content)["api_key"].partition(":")
        if role not in ("events", "read", "admin"):
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "unknown key"}})
        return httpx.Response(200, json={"tenant": tenant, "role": role, "key_id": f"key_{tenant}_{role}"})

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


def _bootstrap(tenant: str = "demo-bootstrap") -> Bootstrap:
    return Bootstrap(tenant, BOOTSTRAP_ACCOUNT)


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    keys = KeyIntrospection("http://ingest", internal_token="internal", ttl_seconds=0, client=_ingest())
    app = service_app("trigger-engine", "test")
    service = SettingsService(engine=engine, repository=SettingsRepository(), defaults=DEFAULTS,
                              bootstrap=_bootstrap(), clock=FixedClock(NOW))
    app.include_router(build_router(engine=engine, repository=EngineRepository(), keys=keys))
    app.include_router(build_settings_router(service=service, keys=keys))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://trigger-engine") as http:
        yield http
    await keys.aclose()


@pytest.fixture
def tenant() -> Tenant:
    return Tenant(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
def other() -> Tenant:
    return Tenant(f"t{uuid.uuid4().hex[:10]}")


def handler(engine: AsyncEngine, bootstrap: Bootstrap | None = None) -> EventHandler:
    """An engine instance: its own configuration cache, on the shared database."""
    configs = TenantConfigs(repository=SettingsRepository(), defaults=DEFAULTS, bootstrap=bootstrap or _bootstrap())
    return EventHandler(engine=engine, repository=EngineRepository(), clock=FixedClock(NOW), configs=configs,
                        metrics=EngineMetrics(CollectorRegistry()), on_commit=lambda: None)


async def apply(instance: EventHandler, tenant: str, *events: Event) -> None:
    items: Sequence[Item[EventRecord]] = [Item(None, EventRecord(tenant, e, NOW, None)) for e in events]  # type: ignore[arg-type]
    await instance(items)


def account_event(kind: str, account_id: str, *, at: str = "2026-03-01T10:00:00Z") -> Event:
    return parse_event({"event_id": f"acc-{uuid.uuid4().hex[:8]}", "type": f"account.{kind}", "occurred_at": at,
                        "data": {"account_id": account_id, "waba_id": "200000000000001"}})


async def commands(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT value FROM outbox ORDER BY id"))
        found = [json.loads(r.value) for r in rows]
    return [c for c in found if c["tenant"] == tenant]


async def decisions(engine: AsyncEngine, tenant: str) -> list[tuple[str, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT outcome, reason FROM decisions WHERE tenant = :t ORDER BY id"),
                                  {"t": tenant})
        return [(r.outcome, r.reason) for r in rows]


def fields(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 422, resp.text
    return {e["field"]: e["reason"] for e in resp.json()["errors"]}


# --- reading -------------------------------------------------------------------------------------------


async def test_a_tenant_that_changed_nothing_reads_every_flow_with_its_defaults(client, tenant) -> None:  # type: ignore[no-untyped-def]
    resp = await client.get("/v1/flows", headers=tenant.auth("read"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["tenant"] == tenant.name
    flows = {f["flow"]: f for f in body["flows"]}
    assert set(flows) == {"welcome", "order_confirmation", "anti_fraud_notice", "shipment_update", "abandoned_cart",
                          "price_drop"}
    confirmation = flows[FLOW]
    assert (confirmation["version"], confirmation["updated_at"], confirmation["updated_by"]) == (0, None, None)
    assert confirmation["settings"] == OrderConfirmationSettings().model_dump(mode="json")
    one = await client.get(f"/v1/flows/{FLOW}", headers=tenant.auth("read"))
    assert one.json() == {**confirmation}
    shop = (await client.get("/v1/settings", headers=tenant.auth("read"))).json()
    assert shop["version"] == 0
    assert shop["settings"]["tracking_url"] == "https://install.example/t/{order_id}"  # the installation's default


# --- changing --------------------------------------------------------------------------------------------


async def test_put_replaces_the_settings_absent_fields_take_their_defaults(client, tenant) -> None:  # type: ignore[no-untyped-def]
    first = await client.put(f"/v1/flows/{FLOW}", json={"max_items": 5, "buffer_days": 0},
                             headers=tenant.auth("admin"))
    assert first.status_code == 200, first.text
    assert (first.json()["version"], first.json()["updated_by"]) == (1, tenant.key_id("admin"))
    second = await client.put(f"/v1/flows/{FLOW}", json={"enabled": False}, headers=tenant.auth("admin"))
    settings = second.json()["settings"]
    assert (second.json()["version"], settings["enabled"], settings["max_items"], settings["buffer_days"]) == (
        2, False, 3, 2)
    read = (await client.get(f"/v1/flows/{FLOW}", headers=tenant.auth("read"))).json()
    assert read == second.json()


async def test_patch_merges_templates_per_language_and_null_resets_a_setting(client, tenant) -> None:  # type: ignore[no-untyped-def]
    url, admin = f"/v1/flows/{FLOW}", tenant.auth("admin")
    await client.patch(url, json={"max_items": 2}, headers=admin)
    added = await client.patch(url, json={"templates": {"fr": "confirmation_fr"}}, headers=admin)
    assert added.status_code == 200, added.text
    assert added.json()["settings"]["templates"] == {"en_US": "order_confirmation", "de": "order_confirmation",
                                                     "fr": "confirmation_fr"}
    assert added.json()["settings"]["max_items"] == 2  # untouched by the patch
    removed = await client.patch(url, json={"templates": {"de": None}, "max_items": None}, headers=admin)
    assert removed.json()["settings"]["templates"] == {"en_US": "order_confirmation", "fr": "confirmation_fr"}
    assert removed.json()["settings"]["max_items"] == 3
    assert removed.json()["version"] == 3


async def test_every_change_is_in_the_history_with_who_when_old_and_new(client, tenant) -> None:  # type: ignore[no-untyped-def]
    url = f"/v1/flows/{FLOW}"
    await client.patch(url, json={"buffer_days": 1}, headers=tenant.auth("admin"))
    await client.patch(url, json={"enabled": False}, headers=tenant.auth("admin"))
    history = await client.get(f"{url}/history", headers=tenant.auth("read"))
    assert history.status_code == 200, history.text
    body = history.json()
    assert body["flow"] == FLOW
    assert [c["version"] for c in body["changes"]] == [2, 1]
    latest, first = body["changes"]
    assert (latest["old"]["enabled"], latest["new"]["enabled"]) == (True, False)
    assert (first["old"]["buffer_days"], first["new"]["buffer_days"]) == (2, 1)
    assert latest["changed_by"] == tenant.key_id("admin")
    assert latest["changed_at"] == NOW.isoformat().replace("+00:00", "Z")
    assert latest["new"] == OrderConfirmationSettings(buffer_days=1, enabled=False).model_dump(mode="json")


async def test_a_change_that_changes_nothing_writes_no_version(client, tenant) -> None:  # type: ignore[no-untyped-def]
    url, admin = f"/v1/flows/{FLOW}", tenant.auth("admin")
    current = (await client.get(url, headers=admin)).json()
    again = await client.put(url, json=current["settings"], headers=admin)
    assert again.status_code == 200 and again.json()["version"] == 0
    assert (await client.patch(url, json={}, headers=admin)).json()["version"] == 0
    assert (await client.get(f"{url}/history", headers=admin)).json()["changes"] == []


@pytest.mark.parametrize(("method", "body", "faults"), [
    ("put", {"no_such_setting": 1}, {"body.no_such_setting"}),
    ("patch", {"buffer_days": -1, "expire_after_minutes": -5}, {"body.buffer_days", "body.expire_after_minutes"}),
    ("patch", {"enabled": False, "buffer_days": -1}, {"body.buffer_days"}),  # the valid half is not applied
    ("patch", {"max_items": 11, "templates": {"de": "Not A Name"}}, {"body.max_items", "body.templates.de"}),
    ("put", {"enabled": "yes please"}, {"body.enabled"}),
    ("patch", {"enabled": "yes", "max_items": "5"}, {"body.enabled", "body.max_items"}),  # never coerced
    ("put", [1, 2], {"body"}),
    ("patch", {"account_id": "999999999"}, {"body.account_id"}),  # not the tenant's account
])
async def test_bad_settings_get_one_fault_per_field_and_change_nothing(client, tenant, method: str, body: Any,
                                                                       faults: set[str]) -> None:  # type: ignore[no-untyped-def]
    url, admin = f"/v1/flows/{FLOW}", tenant.auth("admin")
    await client.patch(url, json={"max_items": 4}, headers=admin)
    before = (await client.get(url, headers=admin)).json()
    resp = await client.request(method.upper(), url, json=body, headers=admin)
    assert set(fields(resp)) == faults
    assert resp.json()["error"]["code"] == "invalid_request"
    assert (await client.get(url, headers=admin)).json() == before
    assert len((await client.get(f"{url}/history", headers=admin)).json()["changes"]) == 1


@pytest.mark.parametrize("raw", [b"{not json", b'{"enabled": true, "enabled": false}', b'{"templates": {"de": "a\\u0000"}}'])
async def test_a_body_that_is_not_plain_json_is_refused(client, tenant, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    resp = await client.patch(f"/v1/flows/{FLOW}", content=raw, headers={**tenant.auth("admin"),
                                                                          "Content-Type": "application/json"})
    assert fields(resp)
    assert all(f.startswith("body") for f in fields(resp))


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/flows/no_such_flow"), ("PUT", "/v1/flows/no_such_flow"), ("PATCH", "/v1/flows/no_such_flow"),
    ("GET", "/v1/flows/no_such_flow/history"),
])
async def test_an_unknown_flow_is_a_404(client, tenant, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.request(method, path, json={}, headers=tenant.auth("admin"))
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "not_found"
    assert "order_confirmation" in resp.json()["error"]["message"]  # it names the flows there are


async def test_tenant_settings_patch_history_and_validation(client, tenant) -> None:  # type: ignore[no-untyped-def]
    admin = tenant.auth("admin")
    changed = await client.patch("/v1/settings", json={"time_zone": "America/New_York", "home_region": "us",
                                                       "business_hours": {"start": "09:00"}}, headers=admin)
    assert changed.status_code == 200, changed.text
    settings = changed.json()["settings"]
    assert (settings["time_zone"], settings["home_region"]) == ("America/New_York", "US")
    assert settings["business_hours"] == {"start": "09:00", "end": "22:00", "days": [1, 2, 3, 4, 5, 6, 7]}
    bad = await client.patch("/v1/settings", json={"time_zone": "Mars/Base", "tracking_url": "https://x.example/{id}",
                                                   "default_account_id": "555"}, headers=admin)
    assert set(fields(bad)) == {"body.time_zone", "body.tracking_url"}
    not_mine = await client.patch("/v1/settings", json={"default_account_id": "555"}, headers=admin)
    assert "no WhatsApp account 555" in fields(not_mine)["body.default_account_id"]
    history = (await client.get("/v1/settings/history", headers=tenant.auth("read"))).json()
    assert [c["version"] for c in history["changes"]] == [1]
    assert history["changes"][0]["old"]["time_zone"] == "Europe/Berlin"
    assert (await client.get("/v1/settings", headers=admin)).json() == changed.json()


async def test_concurrent_patches_lose_no_update(client, tenant) -> None:  # type: ignore[no-untyped-def]
    languages = [f"l{chr(97 + i)}" for i in range(8)]
    answers = await asyncio.gather(*(
        client.patch(f"/v1/flows/{FLOW}", json={"templates": {lang: f"confirmation_{lang}"}},
                     headers=tenant.auth("admin")) for lang in languages))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    final = (await client.get(f"/v1/flows/{FLOW}", headers=tenant.auth("read"))).json()
    assert set(languages) <= set(final["settings"]["templates"])
    assert final["version"] == len(languages)
    history = (await client.get(f"/v1/flows/{FLOW}/history", headers=tenant.auth("read"))).json()
    assert sorted(c["version"] for c in history["changes"]) == list(range(1, len(languages) + 1))


# --- roles and isolation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "role", "status"), [
    ("GET", "/v1/flows", "read", 200), ("GET", "/v1/flows", "events", 403), ("GET", "/v1/flows", "nobody", 401),
    ("GET", f"/v1/flows/{FLOW}", "read", 200), ("GET", f"/v1/flows/{FLOW}/history", "events", 403),
    ("PUT", f"/v1/flows/{FLOW}", "read", 403), ("PUT", f"/v1/flows/{FLOW}", "events", 403),
    ("PATCH", f"/v1/flows/{FLOW}", "read", 403), ("PATCH", "/v1/settings", "read", 403),
    ("PATCH", "/v1/settings", "events", 403), ("GET", "/v1/settings", "read", 200),
    ("GET", "/v1/settings/history", "events", 403), ("GET", f"/v1/contacts/{PHONE}/decisions", "read", 200),
    ("GET", f"/v1/contacts/{PHONE}/decisions", "events", 403),
    ("PUT", f"/v1/flows/{FLOW}", "admin", 200), ("PATCH", "/v1/settings", "admin", 200),
])
async def test_each_role_may_do_what_it_may_and_a_refusal_changes_nothing(client, tenant, method: str, path: str,
                                                                         role: str, status: int) -> None:  # type: ignore[no-untyped-def]
    body = {"enabled": False} if "flows" in path else {"home_region": "FR"}
    resp = await client.request(method, path, json=body if method != "GET" else None, headers=tenant.auth(role))
    assert resp.status_code == status, resp.text
    if status == 403:
        assert resp.json()["error"]["code"] == "forbidden"
    versions = [(await client.get(p, headers=tenant.auth("admin"))).json()["version"]
                for p in (f"/v1/flows/{FLOW}", "/v1/settings")]
    assert sum(versions) == (1 if method != "GET" and status == 200 else 0)


async def test_a_tenant_never_sees_or_changes_another_tenants_settings(client, tenant, other) -> None:  # type: ignore[no-untyped-def]
    await client.put(f"/v1/flows/{FLOW}", json={"enabled": False, "templates": {"en_US": "secret_template"}},
                     headers=tenant.auth("admin"))
    await client.patch("/v1/settings", json={"support_url": "https://secret.example/help"}, headers=tenant.auth("admin"))
    for path in ("/v1/flows", f"/v1/flows/{FLOW}", f"/v1/flows/{FLOW}/history", "/v1/settings", "/v1/settings/history"):
        resp = await client.get(path, headers=other.auth("admin"))
        assert resp.status_code == 200
        assert "secret" not in resp.text and tenant.name not in resp.text, (path, resp.text)
    theirs = (await client.get(f"/v1/flows/{FLOW}", headers=other.auth("read"))).json()
    assert (theirs["version"], theirs["settings"]["enabled"]) == (0, True)
    await client.patch(f"/v1/flows/{FLOW}", json={"max_items": 1}, headers=other.auth("admin"))
    mine = (await client.get(f"/v1/flows/{FLOW}", headers=tenant.auth("read"))).json()
    assert (mine["version"], mine["settings"]["max_items"]) == (1, 3)


# --- the engine decides with the current settings ----------------------------------------------------------


async def test_a_put_through_one_instance_governs_the_next_batch_of_another(client, engine, tenant) -> None:  # type: ignore[no-untyped-def]
    first, second = handler(engine), handler(engine)
    await apply(first, tenant.name, account_event("registered", "acct-x"))
    await apply(second, tenant.name, payment(order_id="O-1"))  # warms the second instance's cache
    assert [c["template"]["name"] for c in await commands(engine, tenant.name)] == ["order_confirmation"]

    resp = await client.put(f"/v1/flows/{FLOW}", json={"templates": {"en_US": "confirmation_v2"}},
                            headers=tenant.auth("admin"))
    assert resp.status_code == 200, resp.text
    await apply(second, tenant.name, payment(order_id="O-2"))
    await apply(first, tenant.name, payment(order_id="O-3"))
    sent = await commands(engine, tenant.name)
    assert [(c["template"]["name"], c["account_id"]) for c in sent] == [
        ("order_confirmation", "acct-x"), ("confirmation_v2", "acct-x"), ("confirmation_v2", "acct-x")]

    await client.patch(f"/v1/flows/{FLOW}", json={"enabled": False}, headers=tenant.auth("admin"))
    await apply(second, tenant.name, payment(order_id="O-4"))
    assert (await decisions(engine, tenant.name))[-1] == ("suppressed", "flow disabled")


async def test_accounts_come_from_account_events_and_flows_may_choose_one(client, engine, tenant) -> None:  # type: ignore[no-untyped-def]
    instance = handler(engine)
    await apply(instance, tenant.name, payment(order_id="N-1"))
    assert (await decisions(engine, tenant.name))[-1] == ("suppressed", "no WhatsApp account configured for this tenant")

    await apply(instance, tenant.name, account_event("registered", "acct-1", at="2026-03-01T10:00:00Z"),
                account_event("registered", "acct-2", at="2026-03-01T11:00:00Z"))
    await apply(instance, tenant.name, payment(order_id="N-2"))
    chosen = await client.patch(f"/v1/flows/{FLOW}", json={"account_id": "acct-2"}, headers=tenant.auth("admin"))
    assert chosen.status_code == 200, chosen.text
    await apply(instance, tenant.name, payment(order_id="N-3"))
    await client.patch(f"/v1/flows/{FLOW}", json={"account_id": None}, headers=tenant.auth("admin"))
    await apply(instance, tenant.name, account_event("removed", "acct-1"))
    await apply(instance, tenant.name, payment(order_id="N-4"))
    assert [c["account_id"] for c in await commands(engine, tenant.name)] == ["acct-1", "acct-2", "acct-2"]

    gone = await client.patch(f"/v1/flows/{FLOW}", json={"account_id": "acct-1"}, headers=tenant.auth("admin"))
    assert "no WhatsApp account acct-1 (its accounts: acct-2)" in fields(gone)["body.account_id"]


async def test_the_bootstrap_tenant_sends_from_the_bootstrap_account_until_its_first_registered_account(engine) -> None:  # type: ignore[no-untyped-def]
    bootstrap = f"t{uuid.uuid4().hex[:10]}"
    instance = handler(engine, Bootstrap(bootstrap, BOOTSTRAP_ACCOUNT))
    await apply(instance, bootstrap, payment(order_id="B-1"))
    await apply(instance, bootstrap, account_event("registered", "100000000000009"))
    await apply(instance, bootstrap, payment(order_id="B-2"))
    await apply(instance, bootstrap, account_event("removed", "100000000000009"))
    await apply(instance, bootstrap, payment(order_id="B-3"))
    assert [c["account_id"] for c in await commands(engine, bootstrap)] == [BOOTSTRAP_ACCOUNT, "100000000000009"]
    assert (await decisions(engine, bootstrap))[-1] == ("suppressed", "no WhatsApp account configured for this tenant")


@pytest.mark.parametrize("url", ["https://x.example/t/{order_id:d}", "https://x.example/t/{order_id!r}",
                                 "https://x.example/t/{order_id:>999999999}", "https://x.example/{order_id:{order_id}}"])
async def test_a_tracking_url_with_a_format_spec_is_refused_and_changes_nothing(client, tenant, url: str) -> None:  # type: ignore[no-untyped-def]
    resp = await client.patch("/v1/settings", json={"tracking_url": url}, headers=tenant.auth("admin"))
    assert "format specs and conversions are not allowed" in fields(resp)["body.tracking_url"]
    assert (await client.get("/v1/settings", headers=tenant.auth("read"))).json()["version"] == 0


async def test_a_stored_tracking_url_that_no_longer_validates_leaves_the_engine_on_the_default(
        engine, tenant, caplog) -> None:  # type: ignore[no-untyped-def]
    """A value stored before the format-spec rule (`{order_id:d}` made every payment's batch raise): the engine
    decides with the installation's default URL and logs which setting it left out."""
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO tenant_settings(tenant, version, settings, updated_at, updated_by) VALUES "
            "(:t, 1, CAST(:s AS jsonb), :at, 'key_old')"),
            {"t": tenant.name, "s": json.dumps({"tracking_url": "https://x.example/t/{order_id:d}"}), "at": NOW})
        await SettingsRepository().raise_version(conn, [tenant.name])
    instance = handler(engine)
    await apply(instance, tenant.name, account_event("registered", "acct-1"))
    with caplog.at_level("WARNING", logger="trigger_engine.configuration"):
        await apply(instance, tenant.name, payment(order_id="A-1"))
    (sent,) = await commands(engine, tenant.name)
    assert "https://install.example/t/A-1" in sent["template"]["parameters"]
    assert any("tracking_url" in r.getMessage() and tenant.name in r.getMessage() for r in caplog.records)


# --- the accounts projection applies account events in the order they happened --------------------------------

REGISTERED, REMOVED, REREGISTERED = "2026-11-30T09:00:00Z", "2026-11-30T09:05:00Z", "2026-11-30T09:10:00Z"


@pytest.mark.parametrize(("arrival", "present"), [
    ([("registered", REGISTERED), ("removed", REMOVED)], ()),  # in order
    ([("removed", REMOVED), ("registered", REGISTERED)], ()),  # relayed out of order: the removal stands
    ([("registered", REGISTERED), ("removed", REMOVED), ("registered", REREGISTERED)], ("acct-9",)),
    ([("registered", REREGISTERED), ("removed", REMOVED), ("registered", REGISTERED)], ("acct-9",)),
    ([("removed", REMOVED), ("registered", REREGISTERED), ("registered", REGISTERED)], ("acct-9",)),
])
async def test_account_events_end_as_they_happened_whatever_order_they_arrive_in(
        engine, tenant, arrival: list[tuple[str, str]], present: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    instance = handler(engine)
    for kind, at in arrival:  # one batch each, as two sender relays would deliver them
        await apply(instance, tenant.name, account_event(kind, "acct-9", at=at))
    async with engine.connect() as conn:
        known = (await SettingsRepository().accounts(conn, [tenant.name]))[tenant.name]
    assert (known.present, known.ever) == (present, True)
    await apply(instance, tenant.name, payment(order_id="R-1"))
    assert [c["account_id"] for c in await commands(engine, tenant.name)] == list(present)


async def test_an_older_registration_in_the_same_batch_as_the_removal_does_not_resurrect_it(engine, tenant) -> None:  # type: ignore[no-untyped-def]
    instance = handler(engine)
    await apply(instance, tenant.name, account_event("registered", "acct-8", at=REGISTERED),
                account_event("registered", "acct-9", at=REGISTERED))
    await apply(instance, tenant.name, account_event("removed", "acct-9", at=REMOVED),
                account_event("registered", "acct-9", at=REGISTERED))
    async with engine.connect() as conn:
        known = (await SettingsRepository().accounts(conn, [tenant.name]))[tenant.name]
    assert known.present == ("acct-8",)


# --- the configuration cache holds only committed versions -----------------------------------------------------


class _FailingOnce(EngineRepository):
    """The engine's repository, failing the next batch after its decisions are taken (its transaction rolls back)."""

    fail = False

    async def record_decisions(self, conn, rows) -> None:  # type: ignore[no-untyped-def]
        if self.fail:
            self.fail = False
            raise RuntimeError("the batch fails after deciding")
        await super().record_decisions(conn, rows)


async def test_a_version_raised_by_a_batch_that_rolled_back_is_never_served_from_the_cache(engine, tenant) -> None:  # type: ignore[no-untyped-def]
    """A batch with an account event raises the tenant's version inside its own transaction and builds the
    configuration at that (uncommitted) version; it rolls back, and another instance commits a different change
    under the same version number. The first instance must decide with what was committed."""
    repository = _FailingOnce()
    first = EventHandler(engine=engine, repository=repository, clock=FixedClock(NOW),
                         configs=TenantConfigs(repository=SettingsRepository(), defaults=DEFAULTS, bootstrap=_bootstrap()),
                         metrics=EngineMetrics(CollectorRegistry()), on_commit=lambda: None)
    await apply(first, tenant.name, account_event("registered", "acct-1", at=REGISTERED))  # committed: version 1
    repository.fail = True
    with pytest.raises(RuntimeError):
        await apply(first, tenant.name, account_event("registered", "acct-0", at="2026-01-01T00:00:00Z"),
                    payment(order_id="C-1"))  # version 2 with acct-0 (the earliest) seen, then rolled back
    await apply(handler(engine), tenant.name, account_event("removed", "acct-1", at=REMOVED),
                account_event("registered", "acct-2", at=REMOVED))  # version 2 committed: acct-2 only
    await apply(first, tenant.name, payment(order_id="C-2"))
    assert [c["account_id"] for c in await commands(engine, tenant.name)] == ["acct-2"]
