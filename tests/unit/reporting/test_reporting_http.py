"""GET /v1/reports/overview: range handling, tenant scope and the response shape."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry
from reporting_factories import T0, FakeStore, fake_keys, inbound, items, paid, sent, status

from reporting.adapters.http import create_app
from reporting.domain.policy import ReportPolicy
from reporting.handlers import ApplyEvents, ReportingMetrics
from scrm_common.clock import FixedClock


@pytest.fixture
async def client():
    store = FakeStore()
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
    await handle(items(sent("wamid.1", at=T0), status("delivered", at=T0 + timedelta(minutes=1)),
                       status("read", at=T0 + timedelta(days=1)), inbound(at=T0 + timedelta(hours=2)),
                       paid("A1", 99.5, at=T0)))

    async def ready() -> bool:
        return True

    app = create_app(store=store, keys=fake_keys(), clock=FixedClock(T0 + timedelta(days=3)),
                     policy=ReportPolicy(), registry=CollectorRegistry(), ready=ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


AUTH = {"Authorization": "Bearer shop:read"}


async def test_default_range_is_the_last_seven_days(client):
    body = (await client.get("/v1/reports/overview", headers=AUTH)).json()
    assert (body["from"], body["to"]) == ("2026-02-26", "2026-03-04")
    assert len(body["days"]) == 7
    assert body["totals"]["sent"] == 1
    assert body["totals"]["replied"] == 1
    assert body["totals"]["revenue"] == {"EUR": "99.50"}
    assert body["totals"]["rates"]["delivery_rate"] == 1.0
    by_day = {d["day"]: d for d in body["days"]}
    assert by_day["2026-03-01"]["delivered"] == 1
    assert by_day["2026-03-02"]["read"] == 1
    assert [f["flow"] for f in body["flows"]] == ["welcome", None]


async def test_explicit_range_is_inclusive(client):
    body = (await client.get("/v1/reports/overview?from=2026-03-02&to=2026-03-02", headers=AUTH)).json()
    assert [d["day"] for d in body["days"]] == ["2026-03-02"]
    assert body["totals"]["read"] == 1
    assert body["totals"]["sent"] == 0
    assert body["totals"]["rates"]["delivery_rate"] is None


@pytest.mark.parametrize("query", ["from=2026-03-02&to=2026-03-01", "from=2025-01-01&to=2026-01-02",
                                   "from=yesterday", "to=2026-13-01"])
async def test_bad_ranges_are_422(client, query):
    resp = await client.get(f"/v1/reports/overview?{query}", headers=AUTH)
    assert resp.status_code == 422
    body = resp.json()
    assert body["error"]["code"] == "invalid_request"
    assert body["errors"] and all(e["field"].startswith("query.") and e["reason"] for e in body["errors"])


async def test_another_tenant_sees_nothing(client):
    body = (await client.get("/v1/reports/overview", headers={"Authorization": "Bearer other"})).json()
    assert body["tenant"] == "other"
    assert body["totals"]["sent"] == 0
    assert body["flows"] == []


async def test_no_key_is_401(client):
    resp = await client.get("/v1/reports/overview")
    assert resp.status_code == 401
    assert resp.json()["error"] == {"code": "unauthorized", "message": "missing bearer API key"}


@pytest.mark.parametrize(("key", "status"), [("shop:read", 200), ("shop:admin", 200), ("shop:events", 403),
                                             ("unknown-key", 401)])
async def test_the_overview_needs_a_read_or_admin_key(client, key, status):
    resp = await client.get("/v1/reports/overview", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == status, resp.text
    if status == 403:
        assert resp.json()["error"]["code"] == "forbidden"
