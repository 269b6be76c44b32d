"""R-G5 across currencies: spend converted to the tenant's base currency with dated FX rates, exact Decimals,
a currency without a rate kept apart; settings from the environment and per tenant over HTTP."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from segmenter_factories import T0, FakeStore, fake_keys, paid, record, returned

from scrm_common.clock import FixedClock
from scrm_common.http import declared_roles
from scrm_common.kafka.consumer import Item
from segmenter.adapters.http import create_app
from segmenter.config import Settings
from segmenter.domain.currency import CurrencySettings, convert
from segmenter.domain.features import ContactFeatures, evolve
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.tiers import ValueTier, lifetime_spend, tags, value_tier, window_spend
from segmenter.handlers import ApplyEvents, RefreshTiers, SegmenterMetrics

POLICY = SegmentPolicy()
AS_OF = date(2026, 11, 30)
RATES = CurrencySettings(base_currency="EUR", rates={"JPY": Decimal("0.0061"), "USD": Decimal("0.92"),
                                                     "KWD": Decimal("2.98")}, as_of=AS_OF)
NO_RATES = CurrencySettings(base_currency="EUR")


def fold(*events) -> ContactFeatures:
    features = ContactFeatures()
    for ev in events:
        features = evolve(features, ev)
    return features


# --- conversion ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("orders", "fx", "converted", "apart", "tier"), [
    # Issue 5: one ¥12,800 order is about 78 EUR, not 12,800 — value:low, not value:high.
    ([("JPY", 12800.0)], RATES, "78.08", {}, ValueTier.LOW),
    ([("JPY", 1_000_000.0)], RATES, "6100.00", {}, ValueTier.HIGH),
    ([("KWD", 12.345)], RATES, "36.79", {}, ValueTier.LOW),
    ([("KWD", 400.0)], RATES, "1192.00", {}, ValueTier.MID),
    ([("EUR", 4000.0), ("USD", 2000.0)], RATES, "5840.00", {}, ValueTier.HIGH),
    # A currency without a rate is kept apart, never added raw.
    ([("JPY", 12800.0)], NO_RATES, "0.00", {"JPY": "12800"}, ValueTier.LOW),
    ([("EUR", 4000.0), ("USD", 2000.0)], NO_RATES, "4000.00", {"USD": "2000.00"}, ValueTier.MID),
    ([("EUR", 900.0), ("BRL", 9000.0)], RATES, "900.00", {"BRL": "9000.00"}, ValueTier.LOW),
    ([("EUR", 1000.0)], NO_RATES, "1000.00", {}, ValueTier.MID),
])
def test_spend_is_converted_to_the_base_currency_and_what_has_no_rate_is_kept_apart(orders, fx, converted, apart,
                                                                                   tier):
    features = fold(*(paid(f"o{i}", amount, currency=cur, at=T0) for i, (cur, amount) in enumerate(orders)))
    spend = window_spend(features, T0, POLICY, fx)
    assert spend.currency == "EUR"
    assert str(spend.converted) == converted
    assert {c: str(a) for c, a in spend.unconverted.items()} == apart
    assert value_tier(features, T0, POLICY, fx) is tier
    assert f"value:{tier}" in tags(features, T0, POLICY, fx)


def test_another_base_currency_converts_the_other_way():
    jpy = CurrencySettings(base_currency="JPY", rates={"EUR": Decimal("163.9")}, as_of=AS_OF)
    features = fold(paid("o1", 12800.0, currency="JPY"), paid("o2", 10.0, currency="EUR"))
    assert lifetime_spend(features, jpy).converted == Decimal("14439")  # whole yen: JPY has no minor unit


def test_returns_are_netted_in_the_orders_currency_before_converting():
    features = fold(paid("o1", 12800.0, currency="JPY"), returned("o1", 2800.0, at=T0 + timedelta(hours=1)))
    assert features.spend_by_currency() == {"JPY": Decimal("10000")}
    assert lifetime_spend(features, RATES).converted == Decimal("61.00")


def test_spend_outside_the_value_window_counts_for_life_but_not_for_the_tier():
    features = fold(paid("o1", 1_000_000.0, currency="JPY", at=T0 - timedelta(days=400)))
    assert lifetime_spend(features, RATES).converted == Decimal("6100.00")
    assert window_spend(features, T0, POLICY, RATES).converted == Decimal("0.00")
    assert value_tier(features, T0, POLICY, RATES) is ValueTier.LOW


@pytest.mark.parametrize(("amount", "currency", "exact"), [
    (149.9, "EUR", "149.90"), (0.1 + 0.2, "EUR", "0.30"), (12800.0, "JPY", "12800"), (12.345, "KWD", "12.345"),
    (10.005, "EUR", "10.01"), (1999.0, "CLP", "1999"),
])
def test_order_amounts_are_exact_in_the_currencys_minor_units(amount, currency, exact):
    features = fold(paid("o1", amount, currency=currency))
    assert str(features.order_history[0].amount) == exact


def test_convert_sums_exactly():
    spend = convert({"EUR": Decimal("0.10"), "USD": Decimal("0.20")},
                    CurrencySettings(rates={"USD": Decimal("1")}, as_of=AS_OF))
    assert spend.converted == Decimal("0.30")


# --- settings ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "field"), [
    ({"base_currency": "EURO"}, "base_currency"),
    ({"base_currency": "XYZ"}, "base_currency"),
    ({"rates": {"ABC": "1.2"}, "as_of": "2026-11-30"}, "rates.ABC.[key]"),
    ({"rates": {"JPY": "0"}, "as_of": "2026-11-30"}, "rates.JPY"),
    ({"rates": {"JPY": "-0.0061"}, "as_of": "2026-11-30"}, "rates.JPY"),
    ({"rates": {"JPY": "NaN"}, "as_of": "2026-11-30"}, "rates.JPY"),
    ({"rates": {"JPY": "cheap"}, "as_of": "2026-11-30"}, "rates.JPY"),
    ({"rates": {"JPY": "0.0061"}}, ""),  # rates need their date
    ({"base_currency": "EUR", "rates": {"EUR": "1.1"}, "as_of": "2026-11-30"}, ""),  # the base is 1
    ({"rates": {}, "as_of": "30.11.2026"}, "as_of"),
    ({"base": "EUR"}, "base"),
])
def test_bad_currency_settings_are_refused_with_the_field_at_fault(raw, field):
    with pytest.raises(ValidationError) as err:
        CurrencySettings.model_validate(raw)
    assert field in {".".join(str(p) for p in e["loc"]) for e in err.value.errors()}


def test_default_currency_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("SCRM_SEGMENTER_BASE_CURRENCY", "CHF")
    monkeypatch.setenv("SCRM_SEGMENTER_FX_RATES", '{"EUR": 0.94, "JPY": "0.0057"}')
    monkeypatch.setenv("SCRM_SEGMENTER_FX_AS_OF", "2026-11-30")
    fx = Settings().default_currency
    assert fx == CurrencySettings(base_currency="CHF", rates={"EUR": Decimal("0.94"), "JPY": Decimal("0.0057")},
                                  as_of=AS_OF)


@pytest.mark.parametrize("env", [
    {"SCRM_SEGMENTER_BASE_CURRENCY": "EURO"},
    {"SCRM_SEGMENTER_FX_RATES": '{"JPY": 0.0061}'},  # no date
    {"SCRM_SEGMENTER_FX_RATES": '{"JPY": -1}', "SCRM_SEGMENTER_FX_AS_OF": "2026-11-30"},
])
def test_bad_default_currency_settings_stop_the_service_at_start(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_the_default_is_eur_without_rates(monkeypatch):
    for name in ("SCRM_SEGMENTER_BASE_CURRENCY", "SCRM_SEGMENTER_FX_RATES", "SCRM_SEGMENTER_FX_AS_OF"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().default_currency == CurrencySettings(base_currency="EUR", rates={}, as_of=None)


# --- the handler and the refresher use each tenant's settings ---------------------------------------------

async def test_stored_value_tiers_use_the_tenants_rates_and_are_recomputed_when_they_change():
    store, clock = FakeStore(), FixedClock(T0)
    registry = CollectorRegistry()
    metrics = SegmenterMetrics(registry)
    handle = ApplyEvents(store=store, clock=clock, policy=POLICY, metrics=metrics, currency=NO_RATES)
    await handle([Item(None, record(paid("o1", 1_000_000.0, currency="JPY", at=T0)))])
    assert store.contacts[("shop", "cust-1")].value_tier == "low"  # no JPY rate: kept apart
    assert registry.get_sample_value("scrm_segmenter_unconverted_orders_total", {"currency": "JPY"}) == 1

    await store.put_currency("shop", RATES, T0 + timedelta(minutes=1))
    clock.advance(timedelta(minutes=2))
    refresher = RefreshTiers(store=store, clock=clock, policy=POLICY, metrics=metrics, interval_seconds=1,
                             batch=10, currency=NO_RATES)
    assert await refresher.refresh_once() == 1
    row = store.contacts[("shop", "cust-1")]
    assert row.value_tier == "high"  # ¥1,000,000 ≈ 6,100 EUR
    assert "value:high" in row.tags


async def test_one_tenants_rates_do_not_change_anothers_tiers():
    store, clock = FakeStore(), FixedClock(T0)
    handle = ApplyEvents(store=store, clock=clock, policy=POLICY, metrics=SegmenterMetrics(CollectorRegistry()),
                         currency=NO_RATES)
    await store.put_currency("a", RATES, T0)
    await handle([Item(None, record(paid("o1", 1_000_000.0, currency="JPY"), tenant=t)) for t in ("a", "b")])
    assert store.contacts[("a", "cust-1")].value_tier == "high"
    assert store.contacts[("b", "cust-1")].value_tier == "low"


# --- GET|PUT /v1/settings/currency and the contact's spend -----------------------------------------------

@pytest.fixture
async def api():
    store, clock = FakeStore(), FixedClock(T0 + timedelta(hours=1))
    handle = ApplyEvents(store=store, clock=clock, policy=POLICY, metrics=SegmenterMetrics(CollectorRegistry()),
                         currency=NO_RATES)
    await handle([Item(None, record(e)) for e in (paid("o1", 12800.0, currency="JPY", at=T0),
                                                    paid("o2", 12.345, currency="KWD", at=T0),
                                                    paid("o3", 20.0, currency="EUR", at=T0))])

    async def ready() -> bool:
        return True

    app = create_app(store=store, keys=fake_keys(), clock=clock, policy=POLICY, registry=CollectorRegistry(),
                     ready=ready, currency=NO_RATES)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client, store


WRITE, READ = {"Authorization": "Bearer shop"}, {"Authorization": "Bearer shop:read"}
BODY = {"base_currency": "EUR", "rates": {"JPY": "0.0061", "KWD": 2.98}, "as_of": "2026-11-30"}


async def test_currency_settings_default_until_the_tenant_stores_its_own(api):
    client, store = api
    got = (await client.get("/v1/settings/currency", headers=READ)).json()
    assert got == {"tenant": "shop", "base_currency": "EUR", "rates": {}, "as_of": None, "source": "default",
                   "updated_at": None}
    resp = await client.put("/v1/settings/currency", headers=WRITE, json=BODY)
    assert resp.status_code == 200, resp.text
    assert resp.json()["rates"] == {"JPY": "0.0061", "KWD": "2.98"}
    got = (await client.get("/v1/settings/currency", headers=READ)).json()
    assert (got["source"], got["as_of"], got["rates"]) == ("tenant", "2026-11-30", {"JPY": "0.0061", "KWD": "2.98"})
    other = (await client.get("/v1/settings/currency", headers={"Authorization": "Bearer other"})).json()
    assert other["source"] == "default"
    assert store.contacts[("shop", "cust-1")].refresh_at == T0 + timedelta(hours=1)  # tiers recomputed soon


@pytest.mark.parametrize("role", ["read", "events"])
async def test_only_an_admin_key_may_change_currency_settings(api, role):
    client, store = api
    resp = await client.put("/v1/settings/currency", headers={"Authorization": f"Bearer shop:{role}"}, json=BODY)
    assert resp.status_code == 403
    assert resp.json()["error"] == {"code": "forbidden", "message": f"a key with role '{role}' may not do this; "
                                                                    "it needs role 'admin'"}
    assert store.currency_settings == {}
    reading = await client.get("/v1/settings/currency", headers={"Authorization": f"Bearer shop:{role}"})
    assert reading.status_code == (200 if role == "read" else 403)


def test_each_route_declares_its_roles():
    """What `service_app` writes into the OpenAPI as `x-scrm-roles` (and what the isolation walk reads)."""
    async def ready() -> bool:
        return True

    app = create_app(store=FakeStore(), keys=fake_keys(), clock=FixedClock(T0), policy=POLICY,
                     registry=CollectorRegistry(), ready=ready)
    roles = {(method, route.path_format): declared_roles(route) for route in iter_route_contexts(app.routes)
             if route.path_format.startswith("/v1/") for method in route.methods}
    assert roles == {("GET", "/v1/contacts/{contact}"): ("read", "admin"),
                     ("GET", "/v1/settings/currency"): ("read", "admin"),
                     ("PUT", "/v1/settings/currency"): ("admin",)}


@pytest.mark.parametrize(("body", "field"), [
    ({"base_currency": "XYZ"}, "body.base_currency"),
    ({"rates": {"JPY": -1}, "as_of": "2026-11-30"}, "body.rates.JPY"),
    ({"rates": {"JPY": "0.0061"}}, "body"),
    ({"rates": {"JPY": "0.0061"}, "as_of": "2026-11-30", "extra": 1}, "body.extra"),
    ([1, 2], "body"),
])
async def test_bad_currency_settings_are_a_422_naming_the_field_and_change_nothing(api, body, field):
    client, store = api
    resp = await client.put("/v1/settings/currency", headers=WRITE, json=body)
    assert resp.status_code == 422
    got = resp.json()
    assert got["error"]["code"] == "invalid_request"
    assert field in {e["field"] for e in got["errors"]}
    assert all(e["reason"] for e in got["errors"])
    assert store.currency_settings == {}


async def test_the_contact_shows_converted_spend_and_what_has_no_rate(api):
    client, _ = api
    before = (await client.get("/v1/contacts/cust-1", headers=READ)).json()["features"]
    assert (before["spend"], before["spend_currency"], before["value_tier"]) == ("20.00", "EUR", "low")
    assert before["unconverted_spend"] == {"JPY": "12800", "KWD": "12.345"}
    await client.put("/v1/settings/currency", headers=WRITE, json=BODY)
    after = (await client.get("/v1/contacts/cust-1", headers=READ)).json()["features"]
    assert (after["spend"], after["spend_last_365d"], after["unconverted_spend"]) == ("134.87", "134.87", {})
    assert after["fx_as_of"] == "2026-11-30"


def test_unconverted_spend_is_shown_in_its_currencys_minor_units():
    """Orders stored before amounts were quantized (149.9) still read as money (149.90)."""
    spend = convert({"BRL": Decimal("149.9"), "JPY": Decimal("12800.0")}, NO_RATES)
    assert {c: str(a) for c, a in spend.unconverted.items()} == {"BRL": "149.90", "JPY": "12800"}


@pytest.mark.parametrize("stored_first", [False, True], ids=["default", "tenant's own"])
async def test_the_object_get_returns_can_be_put_back_as_it_is(api, stored_first):
    """GET → PUT of the same body: the read-only tenant, source and updated_at are accepted and ignored."""
    client, store = api
    if stored_first:
        assert (await client.put("/v1/settings/currency", headers=WRITE, json=BODY)).status_code == 200
    got = (await client.get("/v1/settings/currency", headers=READ)).json()
    assert {"tenant", "source", "updated_at"} <= got.keys()
    resp = await client.put("/v1/settings/currency", headers=WRITE, json=got)
    assert resp.status_code == 200, resp.text
    again = (await client.get("/v1/settings/currency", headers=READ)).json()
    assert (again["source"], again["base_currency"], again["rates"], again["as_of"]) == \
        ("tenant", got["base_currency"], got["rates"], got["as_of"])
    assert store.currency_settings["shop"].settings.rates == {c: Decimal(r) for c, r in got["rates"].items()}


async def test_a_put_naming_another_tenant_is_refused_and_changes_nothing(api):
    client, store = api
    resp = await client.put("/v1/settings/currency", headers=WRITE, json={**BODY, "tenant": "other"})
    assert resp.status_code == 422
    assert [e["field"] for e in resp.json()["errors"]] == ["body.tenant"]
    assert store.currency_settings == {}


async def test_the_openapi_describes_the_put_body_with_an_example(api):
    client, _ = api
    spec = (await client.get("/openapi.json")).json()
    body = spec["paths"]["/v1/settings/currency"]["put"]["requestBody"]["content"]["application/json"]
    schema = spec["components"]["schemas"][body["schema"]["$ref"].rsplit("/", 1)[-1]]
    assert {"base_currency", "rates", "as_of"} <= schema["properties"].keys()
    example = next(iter(body["examples"].values()))["value"]
    assert example["base_currency"] == "EUR" and example["rates"] and example["as_of"]
