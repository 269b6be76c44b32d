"""The revocation bound with two ingest replicas on one database: a key revoked (or a tenant disabled) through
one replica is refused by the other's key introspection and key-management routes at once, and by its
`POST /v1/events` within SCRM_KEY_CACHE_SECONDS; so a sibling service, caching introspection for that long,
refuses it within the same bound, not twice it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.adapters.db import TenantDirectory
from tests.integration.ingest.conftest import INTERNAL_TOKEN, Ingest, Recorder, build_app
from tests.integration.ingest.test_tenants_api import OPERATOR, bearer, event, issue, keys_of, make_tenant

INTERNAL = {"X-Scrm-Internal-Token": INTERNAL_TOKEN}


@pytest.fixture
async def replica(ingest: Ingest, engine: AsyncEngine) -> AsyncIterator[Ingest]:
    """A second ingest replica (same settings, 30 s key cache, its own directory and caches)."""
    directory = TenantDirectory(engine, cache_seconds=ingest.settings.key_cache_seconds)
    recorder, registry = Recorder(), CollectorRegistry()
    app = build_app(ingest.settings, directory, recorder, registry)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest-2") as client:
        yield Ingest(client, directory, recorder, registry, ingest.settings)


async def introspect(replica: Ingest, key: str) -> int:
    return (await replica.client.post("/internal/v1/keys/introspect", json={"api_key": key},
                                      headers=INTERNAL)).status_code


async def test_a_key_revoked_through_one_replica_is_unknown_to_the_others_introspection_at_once(
        ingest: Ingest, replica: Ingest) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "read")
    assert await introspect(replica, key["key"]) == 200
    resp = await ingest.client.delete(f"/v1/admin/tenants/{tenant}/keys/{key['id']}", headers=OPERATOR)
    assert resp.status_code == 204
    assert await introspect(replica, key["key"]) == 404


async def test_a_revoked_admin_key_issues_no_key_through_another_replica(ingest: Ingest, replica: Ingest) -> None:
    tenant = await make_tenant(ingest)
    admin = await issue(ingest, tenant, "admin")
    assert (await replica.client.get("/v1/keys", headers=bearer(admin["key"]))).status_code == 200
    resp = await ingest.client.delete(f"/v1/keys/{admin['id']}", headers=bearer(admin["key"]))
    assert resp.status_code == 204
    before = await keys_of(ingest, tenant)
    for method, path, body in (("POST", "/v1/keys", {"role": "admin"}), ("GET", "/v1/keys", None),
                               ("DELETE", f"/v1/keys/{admin['id']}", None)):
        resp = await replica.client.request(method, path, json=body, headers=bearer(admin["key"]))
        assert resp.status_code == 401, (method, path, resp.text)
    assert await keys_of(ingest, tenant) == before


async def test_a_tenant_disabled_through_one_replica_is_refused_by_the_others_introspection_at_once(
        ingest: Ingest, replica: Ingest) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "admin")
    assert await introspect(replica, key["key"]) == 200
    await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"status": "disabled"}, headers=OPERATOR)
    assert await introspect(replica, key["key"]) == 404
    assert (await replica.client.get("/v1/keys", headers=bearer(key["key"]))).status_code == 401


async def test_events_use_a_cache_no_older_than_the_key_cache_bound(engine: AsyncEngine, ingest: Ingest) -> None:
    """`POST /v1/events` resolves keys through a cache (the hot path): a revocation made elsewhere reaches it
    once the entry expires, within `cache_seconds` of the revocation, never later."""
    bound = 0.5
    directory = TenantDirectory(engine, cache_seconds=bound)
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "events")
    assert (await directory.lookup(key["key"], cached=True)).principal is not None
    assert (await ingest.client.delete(f"/v1/admin/tenants/{tenant}/keys/{key['id']}",
                                       headers=OPERATOR)).status_code == 204
    revoked = time.monotonic()
    assert (await directory.lookup(key["key"])).principal is None  # the database, not the cache
    deadline = revoked + bound + 2.0
    while (await directory.lookup(key["key"], cached=True)).principal is not None:
        assert time.monotonic() < deadline, "the hot path kept a revoked key beyond its cache bound"
        await asyncio.sleep(0.02)  # a poll's interval, not a synchronisation: the deadline decides


async def test_the_events_route_resolves_keys_through_the_replicas_cache(ingest: Ingest, replica: Ingest) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "events")
    assert (await replica.client.post("/v1/events", json=event(), headers=bearer(key["key"]))).status_code == 202
    await ingest.client.delete(f"/v1/admin/tenants/{tenant}/keys/{key['id']}", headers=OPERATOR)
    # The replica answered from its cache (30 s here): accepted, as the bound allows; its database read says no.
    resp = await replica.client.post("/v1/events", json=event("c-2"), headers=bearer(key["key"]))
    assert resp.status_code == 202, resp.text
    assert await introspect(replica, key["key"]) == 404


async def test_reading_the_database_on_every_call_moves_last_used_at_at_most_once_a_minute(
        ingest: Ingest, replica: Ingest) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "read")
    seen: list[Any] = []
    for who in (ingest, replica, ingest, replica):
        assert await introspect(who, key["key"]) == 200
        seen.append(next(k["last_used_at"] for k in await keys_of(ingest, tenant) if k["id"] == key["id"]))
    assert seen[0] is not None
    assert seen == [seen[0]] * 4
