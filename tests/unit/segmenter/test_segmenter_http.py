"""GET /v1/contacts/{contact}: tenant-scoped, by external id or phone, tiers against now."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry
from segmenter_factories import PHONE, T0, FakeStore, event, fake_keys, inbound, paid, record

from scrm_common.clock import FixedClock
from scrm_common.kafka.consumer import Item
from segmenter.adapters.http import create_app
from segmenter.domain.policy import SegmentPolicy
from segmenter.handlers import ApplyEvents, SegmenterMetrics


@pytest.fixture
async def client():
    store, clock = FakeStore(), FixedClock(T0)
    handle = ApplyEvents(store=store, clock=clock, policy=SegmentPolicy(),
                         metrics=SegmenterMetrics(CollectorRegistry()))
    await handle([Item(None, record(e)) for e in (
        inbound(at=T0), paid("o1", 1500.0, at=T0, name="Anna"),
        event("contact.created", external_id="cust-mx", phone="+525512345678", name="Lucía"),
        event("contact.created", external_id="cust-mx-2", phone="+525512345678"),
        inbound(external_id=None, phone=None, wa_id="5215512345678", profile_name="🦄 Lucky"),
    )])
    clock.advance(timedelta(days=2))

    async def ready() -> bool:
        return True

    app = create_app(store=store, keys=fake_keys(), clock=clock, policy=SegmentPolicy(),
                     registry=CollectorRegistry(), ready=ready)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


async def test_contact_by_external_id(client):
    resp = await client.get("/v1/contacts/cust-1", headers={"Authorization": "Bearer shop:read"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["tenant"] == "shop"
    assert body["contact"]["key"] == "cust-1"
    assert body["contact"]["name"] == "Anna"
    assert body["features"]["orders"] == 1
    assert body["features"]["value_tier"] == "mid"
    assert body["activity"] == {"tier": "medium", "colour": "yellow", "as_of": "2026-03-03T12:00:00Z"}
    assert "activity:medium" in body["tags"]


async def test_contact_by_url_encoded_phone(client):
    resp = await client.get("/v1/contacts/%2B" + PHONE[1:], headers={"Authorization": "Bearer shop:read"})
    assert resp.status_code == 200
    assert resp.json()["contact"]["key"] == "cust-1"


@pytest.mark.parametrize("ref", ["cust-mx", "cust-mx-2", "%2B525512345678", "%2B5215512345678", "5215512345678",
                                 "525512345678", "%2B52%2055%201234%205678"])
async def test_a_contact_is_found_by_any_alias(client, ref):
    resp = await client.get(f"/v1/contacts/{ref}", headers={"Authorization": "Bearer shop:read"})
    assert resp.status_code == 200, resp.text
    contact = resp.json()["contact"]
    assert contact["key"] == "cust-mx"
    assert contact["external_ids"] == ["cust-mx", "cust-mx-2"]
    assert (contact["name"], contact["profile_name"]) == ("Lucía", "🦄 Lucky")
    assert (contact["phone"], contact["wa_id"]) == ("+525512345678", "5215512345678")


@pytest.mark.parametrize(("path", "headers", "status", "code"), [
    ("/v1/contacts/cust-1", {"Authorization": "Bearer another-shop"}, 404, "not_found"),
    ("/v1/contacts/nobody", {"Authorization": "Bearer shop:read"}, 404, "not_found"),
    ("/v1/contacts/cust-1", {}, 401, "unauthorized"),
    ("/v1/contacts/cust-1", {"Authorization": "Bearer unknown-key"}, 401, "unauthorized"),
    ("/v1/contacts/cust-1", {"Authorization": "Bearer shop:events"}, 403, "forbidden"),
])
async def test_contacts_are_scoped_to_the_callers_tenant(client, path, headers, status, code):
    resp = await client.get(path, headers=headers)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code


async def test_operations_endpoints(client):
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    assert (await client.get("/metrics")).status_code == 200
