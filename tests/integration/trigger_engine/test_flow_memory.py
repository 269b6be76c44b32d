"""The flows' memory against the real PostgreSQL (issue 9, migration 011_flow_memory): a person's `state` round-trips
through the contacts row, `Remember` writes and deletes one key of one slot (in an event batch and in a timer pass),
`cart_skus` follows the person's open carts through real cart / payment events and merges, a `FanOut` schedules one
timer per person holding the SKU in one statement, and a Send's short links reach `scrm.links.v1` only when the
send is reserved."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import CartUpdated, Event, parse_event
from scrm_common.contracts.links import ShortLink
from scrm_common.db import make_engine, migrate
from scrm_common.kafka.consumer import Item
from tests.unit.trigger_engine.factories import PHONE, T0, contact_created, contact_updated, payment
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.timers import TimerRepository
from trigger_engine.domain.decide import TIMER_FLOWS
from trigger_engine.domain.decisions import Cancel, Decision, FanOut, Remember, Schedule, Send, Suppress
from trigger_engine.domain.links import resume_link, tracked_link
from trigger_engine.domain.model import ContactProfile, EngineConfig, LinkKeys
from trigger_engine.domain.timers import Timer
from trigger_engine.handlers import Applied, Cause, DecisionWriter, EngineMetrics, EventHandler, StaticConfigs
from trigger_engine.main import MIGRATIONS, SCHEMA
from trigger_engine.timers import TimerLoop, TimerMetrics

NOW = T0 + timedelta(hours=1)
FLOW = "test_memory"
LINKS = LinkKeys(secret="test-link-secret", base_url="https://wa.shop.de")
CONFIGS = StaticConfigs(lambda t: EngineConfig(tenant=t, account_id="acct-1", links=LINKS))
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


@pytest.fixture
async def tenant(engine: AsyncEngine) -> AsyncIterator[str]:
    yield f"t{uuid.uuid4().hex[:10]}"
    # The timer loop claims whatever is due, of any tenant: leave nothing pending for the next test.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE timers SET state = 'cancelled' WHERE state = 'pending'"))


# --- builders and readers ---------------------------------------------------------------------------------------


def line(sku: str, price: float = 10.0, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"sku": sku, "name": f"Item {sku}", "price": price, "quantity": quantity, **extra}


def cart_updated(cart_id: str, *skus: str, at: datetime = T0, external_id: str = "cust-1",
                 phone: str | None = None, checkout_url: str | None = "https://shop.example/checkout/1") -> CartUpdated:
    """A `cart.updated` of `external_id` with one line per SKU (none: the cart was emptied)."""
    items = [line(sku) for sku in skus]
    contact = {"external_id": external_id, **({"phone": phone} if phone else {})}
    data: dict[str, Any] = {"cart_id": cart_id, "items": items, "total": sum(i["price"] for i in items),
                            "currency": "EUR"}
    if checkout_url:
        data["checkout_url"] = checkout_url
    event = parse_event({"event_id": f"cart-ev-{next(_ids)}", "type": "cart.updated", "occurred_at": at.isoformat(),
                         "contact": contact, "data": data})
    assert isinstance(event, CartUpdated)
    return event


def handler_for(engine: AsyncEngine) -> EventHandler:
    return EventHandler(engine=engine, repository=EngineRepository(), clock=FixedClock(NOW), configs=CONFIGS,
                        metrics=EngineMetrics(CollectorRegistry()), on_commit=lambda: None)


async def apply_events(engine: AsyncEngine, tenant: str, *events: Event) -> None:
    """One batch through the real handler, as the consumer hands it over."""
    items: Sequence[Item[EventRecord]] = [Item(None, EventRecord(tenant, e, NOW, None)) for e in events]  # type: ignore[arg-type]
    await handler_for(engine)(items)


async def write(engine: AsyncEngine, tenant: str, *decisions: Decision, event_type: str = "contact.created",
                event_id: str = "e-1") -> Applied:
    """Carry out `decisions` as one event batch's (cause: event `event_id` of `tenant`)."""
    cause = Cause(tenant, event_id, event_type, T0, T0, "corr-1")
    async with engine.begin() as conn:
        return await DecisionWriter(EngineRepository(), TimerRepository()).apply(
            conn, [(cause, d) for d in decisions], NOW)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def stored_state(engine: AsyncEngine, tenant: str, person: str) -> dict[str, Any]:
    found = await rows(engine, "SELECT state FROM contacts WHERE tenant = :t AND contact_key = :c", t=tenant, c=person)
    assert found, f"no contacts row for {person}"
    state = found[0]["state"]
    return json.loads(state) if isinstance(state, str) else state


async def load(engine: AsyncEngine, tenant: str, person: str) -> ContactProfile:
    async with engine.connect() as conn:
        return (await EngineRepository().load_profiles(conn, [(tenant, person)]))[(tenant, person)]


async def save(engine: AsyncEngine, tenant: str, profile: ContactProfile) -> None:
    async with engine.begin() as conn:
        await EngineRepository().save_profiles(conn, {(tenant, profile.contact_key): profile}, NOW)


async def cart_skus(engine: AsyncEngine, tenant: str) -> set[tuple[str, str]]:
    """(sku, person) of every row of the tenant's open-cart SKU index."""
    found = await rows(engine, "SELECT sku, contact_key FROM cart_skus WHERE tenant = :t", t=tenant)
    return {(r["sku"], r["contact_key"]) for r in found}


async def decisions(engine: AsyncEngine, tenant: str, flow: str | None = None
                    ) -> list[tuple[str, str, str, str | None, str | None]]:
    """The tenant's decision rows (of `flow` only, when given: the cart events decide for the real flows too)."""
    found = await rows(engine, "SELECT contact_key, flow, outcome, reason, idempotency_key FROM decisions "
                               "WHERE tenant = :t AND (CAST(:f AS text) IS NULL OR flow = :f) ORDER BY id",
                       t=tenant, f=flow)
    return [(r["contact_key"], r["flow"], r["outcome"], r["reason"], r["idempotency_key"]) for r in found]


async def outbox(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    """The tenant's outbox rows (topic, key, value as JSON, headers), oldest first."""
    found = await rows(engine, "SELECT topic, key, value, headers FROM outbox ORDER BY id")
    out = []
    for r in found:
        value = json.loads(bytes(r["value"]))
        if value.get("tenant") == tenant:
            headers = r["headers"] if not isinstance(r["headers"], str) else json.loads(r["headers"])
            out.append({"topic": r["topic"], "key": bytes(r["key"]).decode(), "value": value, "headers": headers})
    return out


@pytest.fixture
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every SQL statement the engine runs while the test does."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:  # noqa: ARG001
        seen.append(statement)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", record)
    yield seen
    sa_event.remove(engine.sync_engine, "before_cursor_execute", record)


# --- state round trip -------------------------------------------------------------------------------------------


async def test_a_profiles_state_round_trips_through_save_and_load(engine, tenant):
    state = MappingProxyType({
        "carts": MappingProxyType({"c-1": {"items": [{"sku": "A", "name": "Kinderwagen 👶 «Luxe»", "price": 199.5,
                                                      "quantity": 1, "stock": None}],
                                           "total": 199.5, "status": "open", "closed_at": None}}),
        "price_drops": MappingProxyType({"SKU/1": ["2026-03-01T12:00:00+00:00"]}),
        "shipments": MappingProxyType({"A-1": {"rank": 2, "status": "out_for_delivery", "event_id": "e-9"}}),
        "notes": MappingProxyType({"rtl": "שלום عربى <b>&amp;</b>"}),
    })
    await save(engine, tenant, ContactProfile("cust-1", phone=PHONE, state=state))

    loaded = await load(engine, tenant, "cust-1")
    assert {slot: dict(v) for slot, v in loaded.state.items()} == {slot: dict(v) for slot, v in state.items()}
    assert loaded.slot("carts")["c-1"]["items"][0]["name"] == "Kinderwagen 👶 «Luxe»"
    assert loaded.slot("absent") == {}

    # Saving again replaces the whole state: a slot the profile no longer has is gone.
    await save(engine, tenant, loaded.with_slot("notes", MappingProxyType({})).with_slot(
        "orders", MappingProxyType({"A-2": {"amount": 450.0, "currency": "EUR", "returned": False}})))
    again = await stored_state(engine, tenant, "cust-1")
    assert set(again) >= {"carts", "price_drops", "shipments", "orders"}
    assert again.get("notes", {}) == {}
    assert again["orders"] == {"A-2": {"amount": 450.0, "currency": "EUR", "returned": False}}


async def test_a_profile_saved_without_state_loads_an_empty_one(engine, tenant):
    await save(engine, tenant, ContactProfile("cust-1", phone=PHONE))
    assert await stored_state(engine, tenant, "cust-1") == {}
    assert dict((await load(engine, tenant, "cust-1")).state) == {}


# --- Remember ---------------------------------------------------------------------------------------------------


async def test_remember_writes_and_deletes_one_key_of_one_slot(engine, tenant):
    await save(engine, tenant, ContactProfile("cust-1", phone=PHONE, state=MappingProxyType({
        "price_drops": MappingProxyType({"A": ["2026-02-27T10:00:00+00:00"]}),
        "carts": MappingProxyType({"c-1": {"status": "open"}})})))

    applied = await write(engine, tenant,
                          Remember(FLOW, "cust-1", "price_drops", "B", ["2026-03-01T12:00:00+00:00"]),
                          Remember(FLOW, "cust-1", "shipments", "order/1", {"rank": 1}),  # a slot not there yet
                          Remember(FLOW, "cust-1", "price_drops", "A", ["x", "y"]),  # replaces the key
                          Remember(FLOW, "cust-1", "price_drops", "A", ["y", "z"]))  # in order: the last wins
    assert await stored_state(engine, tenant, "cust-1") == {
        "price_drops": {"A": ["y", "z"], "B": ["2026-03-01T12:00:00+00:00"]},
        "shipments": {"order/1": {"rank": 1}},
        "carts": {"c-1": {"status": "open"}}}
    assert applied.rows == [] and applied.outbox == []  # memory, no decision of its own
    assert await decisions(engine, tenant) == []

    await write(engine, tenant, Remember(FLOW, "cust-1", "price_drops", "A", None),
                Remember(FLOW, "cust-1", "never", "k", None),  # deleting from a slot that does not exist
                Remember(FLOW, "cust-1", "shipments", "missing", None))  # ... or a key that does not
    assert await stored_state(engine, tenant, "cust-1") == {
        "price_drops": {"B": ["2026-03-01T12:00:00+00:00"]},
        "shipments": {"order/1": {"rank": 1}},
        "carts": {"c-1": {"status": "open"}}}
    # What was remembered is what the next decision loads.
    assert dict((await load(engine, tenant, "cust-1")).slot("shipments")) == {"order/1": {"rank": 1}}


async def test_remember_touches_only_its_own_person_and_tenant(engine, tenant):
    other_tenant = f"{tenant}x"
    for t, person in ((tenant, "cust-1"), (tenant, "cust-2"), (other_tenant, "cust-1")):
        await save(engine, t, ContactProfile(person, phone=PHONE))
    await write(engine, tenant, Remember(FLOW, "cust-1", "price_drops", "A", [1]))

    assert await stored_state(engine, tenant, "cust-1") == {"price_drops": {"A": [1]}}
    assert await stored_state(engine, tenant, "cust-2") == {}
    assert await stored_state(engine, other_tenant, "cust-1") == {}


async def test_a_remember_of_an_event_batch_lands_on_the_profile_the_batch_saved(engine, tenant, monkeypatch):
    # The batch saves the evolved profile (its carts) first; a Remember decided in it must not be overwritten.
    def decide(profile: ContactProfile, event: Any, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
        return (Remember(FLOW, profile.contact_key, "notes", event.event_id, {"seen": now.isoformat()}),)

    monkeypatch.setattr("trigger_engine.handlers.decide", decide)
    cart = cart_updated("c-1", "A", external_id="cust-1")
    await apply_events(engine, tenant, cart)

    state = await stored_state(engine, tenant, "cust-1")
    assert state["notes"] == {cart.event_id: {"seen": NOW.isoformat()}}
    assert state["carts"]["c-1"]["status"] == "open"


def _counting_flow(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                   ) -> tuple[Decision, ...]:
    """A timer flow that counts its firings in the person's memory: what it reads is what the last firing left."""
    seen = profile.slot("counter").get("n", 0)
    assert isinstance(seen, int)
    return (Remember(FLOW, profile.contact_key, "counter", "n", seen + 1),
            Suppress(FLOW, f"fired after {seen}", profile.contact_key, timer.key))


async def test_a_timers_remember_is_what_the_next_timer_of_the_person_reads(engine, tenant, monkeypatch):
    monkeypatch.setitem(TIMER_FLOWS, FLOW, _counting_flow)
    await save(engine, tenant, ContactProfile("cust-1", phone=PHONE))
    registry = CollectorRegistry()
    loop = TimerLoop(engine=engine, repository=EngineRepository(), timers=TimerRepository(), configs=CONFIGS,
                     clock=FixedClock(NOW), metrics=EngineMetrics(registry), timer_metrics=TimerMetrics(registry),
                     on_commit=lambda: None)

    for n in (1, 2, 3):  # one timer per pass: each pass re-reads the person in its own transaction
        await write(engine, tenant, Schedule(FLOW, f"k{n}", "cust-1", NOW - timedelta(seconds=1)))
        assert (await loop.fire_once()).fired == 1

    assert await stored_state(engine, tenant, "cust-1") == {"counter": {"n": 3}}
    told = [d[3] for d in await decisions(engine, tenant, FLOW) if d[2] == "suppressed"]
    assert told == ["fired after 0", "fired after 1", "fired after 2"]


# --- cart_skus follows the open carts ---------------------------------------------------------------------------


async def test_cart_skus_follow_the_persons_open_carts(engine, tenant):
    await apply_events(engine, tenant, cart_updated("c-1", "A", "B", at=T0),
                       cart_updated("c-2", "C", at=T0 + timedelta(minutes=1)))
    assert await cart_skus(engine, tenant) == {("A", "cust-1"), ("B", "cust-1"), ("C", "cust-1")}

    await apply_events(engine, tenant, cart_updated("c-1", "B", "D", at=T0 + timedelta(minutes=2)))
    assert await cart_skus(engine, tenant) == {("B", "cust-1"), ("C", "cust-1"), ("D", "cust-1")}

    await apply_events(engine, tenant, cart_updated("c-2", at=T0 + timedelta(minutes=3)))  # emptied
    assert await cart_skus(engine, tenant) == {("B", "cust-1"), ("D", "cust-1")}

    # An event about something else keeps the index (the carts come back with the stored profile).
    await apply_events(engine, tenant, contact_updated(external_id="cust-1", name="Anna"))
    assert await cart_skus(engine, tenant) == {("B", "cust-1"), ("D", "cust-1")}

    await apply_events(engine, tenant, _payment_for("c-1", at=T0 + timedelta(minutes=4)))
    assert await cart_skus(engine, tenant) == set()
    carts = (await stored_state(engine, tenant, "cust-1"))["carts"]
    assert {cid: c["status"] for cid, c in carts.items()} == {"c-1": "purchased", "c-2": "emptied"}


def _payment_for(cart_id: str | None, *, at: datetime, external_id: str = "cust-1") -> Event:
    event = payment(order_id=f"O-{next(_ids)}", at=at, external_id=external_id, phone=None)
    if cart_id is None:
        return event
    return parse_event({**event.model_dump(mode="json", exclude_none=True),
                        "data": {**event.data.model_dump(mode="json", exclude_none=True), "cart_id": cart_id}})


async def test_a_payment_without_cart_id_closes_the_carts_updated_before_it(engine, tenant):
    await apply_events(engine, tenant, cart_updated("c-1", "A", at=T0), cart_updated("c-2", "B", at=T0))
    await apply_events(engine, tenant, _payment_for(None, at=T0 + timedelta(minutes=5)),
                       cart_updated("c-3", "C", at=T0 + timedelta(minutes=6)))  # a new cart after the purchase
    assert await cart_skus(engine, tenant) == {("C", "cust-1")}


async def test_a_late_cart_update_older_than_the_purchase_does_not_reopen_the_cart(engine, tenant):
    await apply_events(engine, tenant, _payment_for("c-1", at=T0 + timedelta(minutes=10)))
    await apply_events(engine, tenant, cart_updated("c-1", "A", at=T0 + timedelta(minutes=5)))
    assert await cart_skus(engine, tenant) == set()
    assert (await stored_state(engine, tenant, "cust-1"))["carts"]["c-1"]["status"] == "purchased"


async def test_cart_skus_keep_persons_and_tenants_apart(engine, tenant):
    other_tenant = f"{tenant}x"
    await apply_events(engine, tenant, cart_updated("c-1", "A", external_id="cust-1"),
                       cart_updated("c-9", "A", "B", external_id="cust-2"))
    await apply_events(engine, other_tenant, cart_updated("c-1", "A", external_id="cust-1"))
    await apply_events(engine, tenant, _payment_for("c-1", at=T0 + timedelta(minutes=1)))

    assert await cart_skus(engine, tenant) == {("A", "cust-2"), ("B", "cust-2")}
    assert await cart_skus(engine, other_tenant) == {("A", "cust-1")}


@pytest.mark.parametrize("one_batch", [False, True])
async def test_a_merge_moves_the_absorbed_persons_cart_skus_to_the_person(engine, tenant, one_batch):
    await apply_events(engine, tenant, contact_created(external_id="cust-1", phone=None, name="Anna"),
                       contact_created(external_id="guest-1", phone=PHONE))
    carts = (cart_updated("c-1", "A", "S", external_id="cust-1"),
             cart_updated("g-1", "B", "S", external_id="guest-1", at=T0 + timedelta(minutes=1)))
    merging = contact_updated(external_id="cust-1", phone=PHONE)  # guest-1's phone is cust-1's: one person
    if one_batch:
        await apply_events(engine, tenant, *carts, merging)
    else:
        await apply_events(engine, tenant, *carts)
        assert await cart_skus(engine, tenant) == {("A", "cust-1"), ("S", "cust-1"), ("B", "guest-1"),
                                                   ("S", "guest-1")}
        await apply_events(engine, tenant, merging)

    people = await rows(engine, "SELECT contact_key FROM contacts WHERE tenant = :t", t=tenant)
    assert people == [{"contact_key": "cust-1"}]
    assert await cart_skus(engine, tenant) == {("A", "cust-1"), ("B", "cust-1"), ("S", "cust-1")}
    assert set((await stored_state(engine, tenant, "cust-1"))["carts"]) == {"c-1", "g-1"}

    # The absorbed person's cart, closed later under its old identity, leaves the person's index.
    await apply_events(engine, tenant, _payment_for("g-1", at=T0 + timedelta(minutes=5), external_id="guest-1"))
    assert await cart_skus(engine, tenant) == {("A", "cust-1"), ("S", "cust-1")}


# --- FanOut ------------------------------------------------------------------------------------------------------


def _fan_out(sku: str, prefix: str) -> FanOut:
    return FanOut("price_drop", sku, prefix, due_at=T0, reason="price drop 10.0 %",
                  expires_at=T0 + timedelta(hours=24), payload={"sku": sku, "old_price": 100.0, "new_price": 90.0})


async def test_a_fan_out_schedules_one_timer_per_person_with_the_sku_in_one_statement(engine, tenant, statements):
    holders = [f"cust-{i}" for i in range(25)]
    await apply_events(engine, tenant, *(cart_updated(f"c-{p}", "X", "Y", external_id=p) for p in holders),
                       cart_updated("c-other", "Y", external_id="cust-other"),
                       cart_updated("c-gone", "X", external_id="cust-gone"))
    await apply_events(engine, tenant, cart_updated("c-gone", external_id="cust-gone", at=T0 + timedelta(minutes=1)))
    prefix = f"{tenant}|price_drop|pc-1|"
    statements.clear()

    applied = await write(engine, tenant, _fan_out("X", prefix), event_type="product.price_changed",
                          event_id="pc-1")

    fan_outs = [s for s in statements if "INSERT INTO timers" in s]
    assert len(fan_outs) == 1, fan_outs
    assert await decisions(engine, tenant, "price_drop") == [
        ("sku:X", "price_drop", "scheduled", "price drop 10.0 %: 25 contact(s)", prefix)]
    assert applied.earliest_due == T0 and applied.outbox == []
    kept = await rows(engine, "SELECT key, flow, contact_key, state, due_at, expires_at, payload, event_id "
                              "FROM timers WHERE tenant = :t AND flow = 'price_drop'", t=tenant)
    assert sorted(r["key"] for r in kept) == sorted(prefix + p for p in holders)
    for r in kept:
        assert (r["flow"], r["state"], r["due_at"], r["expires_at"], r["event_id"]) == (
            "price_drop", "pending", T0, T0 + timedelta(hours=24), "pc-1")
        assert r["key"] == prefix + r["contact_key"]
        assert r["payload"] == {"sku": "X", "old_price": 100.0, "new_price": 90.0}


async def test_a_fan_out_again_leaves_the_timers_it_made_and_reaches_nobody_new(engine, tenant):
    await apply_events(engine, tenant, cart_updated("c-1", "X", external_id="cust-1"))
    prefix = f"{tenant}|price_drop|pc-1|"
    await write(engine, tenant, _fan_out("X", prefix), event_type="product.price_changed", event_id="pc-1")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE timers SET state = 'fired' WHERE tenant = :t AND flow = 'price_drop'"),
                           {"t": tenant})

    again = await write(engine, tenant, _fan_out("X", prefix), event_type="product.price_changed", event_id="pc-1")
    nobody = await write(engine, tenant, _fan_out("NONE", f"{tenant}|price_drop|pc-2|"),
                         event_type="product.price_changed", event_id="pc-2")

    assert again.earliest_due is None and nobody.earliest_due is None
    assert [d[3] for d in await decisions(engine, tenant, "price_drop")] == [
        "price drop 10.0 %: 1 contact(s)", "price drop 10.0 %: 0 contact(s)", "price drop 10.0 %: 0 contact(s)"]
    kept = await rows(engine, "SELECT key, state FROM timers WHERE tenant = :t AND flow = 'price_drop'", t=tenant)
    assert kept == [{"key": prefix + "cust-1", "state": "fired"}]  # never re-armed by a redelivered event


async def test_a_fan_out_after_a_merge_reaches_the_merged_person_once(engine, tenant):
    await apply_events(engine, tenant, contact_created(external_id="cust-1", phone=None),
                       contact_created(external_id="guest-1", phone=PHONE),
                       cart_updated("c-1", "X", external_id="cust-1"),
                       cart_updated("g-1", "X", external_id="guest-1"))
    await apply_events(engine, tenant, contact_updated(external_id="cust-1", phone=PHONE))
    prefix = f"{tenant}|price_drop|pc-1|"
    await write(engine, tenant, _fan_out("X", prefix), event_type="product.price_changed", event_id="pc-1")

    kept = await rows(engine, "SELECT key, contact_key FROM timers WHERE tenant = :t AND flow = 'price_drop'",
                      t=tenant)
    assert kept == [{"key": prefix + "cust-1", "contact_key": "cust-1"}]


# --- a Send's short links ---------------------------------------------------------------------------------------


def _send_with_links(tenant: str, key: str) -> tuple[Send, tuple[ShortLink, ...]]:
    config = EngineConfig(tenant=tenant, account_id="acct-1", links=LINKS)
    person = ContactProfile("cust-1", phone=PHONE)
    resume_url, resume = resume_link(config, person, key=key, flow="abandoned_cart", cart_id="c-1",
                                     checkout_url="https://shop.example/checkout/1", now=NOW, content="stage_1")
    help_url, specialist = tracked_link(config, person, key=key, flow="abandoned_cart", slot="specialist",
                                        target="https://shop.example/help", now=NOW, content="stage_1")
    send = Send("abandoned_cart", key, "marketing", "cust-1", PHONE, "cart_reminder_1", "en_US",
                ("Item A €10.00", "€10.00", "Only a few left", resume_url, f"Questions? {help_url}"),
                account_id="acct-1", expires_at=NOW + timedelta(hours=23), links=(resume, specialist))
    return send, (resume, specialist)


async def test_a_sends_links_are_published_once_when_the_send_is_reserved(engine, tenant):
    key = f"{tenant}|abandoned_cart|c-1|1"
    send, links = _send_with_links(tenant, key)
    await write(engine, tenant, send)

    written = await outbox(engine, tenant)
    commands = [r for r in written if r["topic"] == topics.SEND_COMMANDS]
    published = [r for r in written if r["topic"] == topics.LINKS]
    assert [c["value"]["idempotency_key"] for c in commands] == [key]
    assert len(published) == 2
    for record, link in zip(published, links, strict=True):
        assert record["key"] == f"{tenant}:{link.code}"
        assert ShortLink.model_validate(record["value"]) == link
        assert not [k for k, v in record["value"].items() if v is None]  # JSON without nulls
        assert ["tenant", tenant] in [list(h) for h in record["headers"]]
    assert {r["value"]["kind"] for r in published} == {"resume", "tracked"}
    assert len(send.parameters[3]) <= 30  # the resume short link with a 18-character base (R-R4)

    # The same decision again (a redelivered event, a timer retried): a duplicate writes no command and no link.
    await write(engine, tenant, send)
    assert len(await outbox(engine, tenant)) == 3
    assert (await decisions(engine, tenant))[-1] == (
        "cust-1", "abandoned_cart", "suppressed", "duplicate: a message was already decided for this key", key)


async def test_a_send_without_links_publishes_none(engine, tenant):
    send, _ = _send_with_links(tenant, f"{tenant}|abandoned_cart|c-1|1")
    await write(engine, tenant, Send(**{f: getattr(send, f) for f in send.__dataclass_fields__} | {"links": ()}))
    assert [r["topic"] for r in await outbox(engine, tenant)] == [topics.SEND_COMMANDS]


async def test_a_prefix_cancel_records_one_row_per_timer_it_cancelled_under_the_timers_key(engine, tenant):
    """A purchase cancels a cart's pending stages by key prefix: each stage is told cancelled under its own key (the
    story shows each stopped), and a prefix that cancels nothing is one line without a key."""
    stages = [f"{tenant}|abandoned_cart|c1|{n}" for n in (1, 2, 3)]
    await write(engine, tenant, *(Schedule("abandoned_cart", key, "p1", T0 + timedelta(hours=n))
                                  for n, key in enumerate(stages, start=1)))
    cancel = Cancel("abandoned_cart", f"{tenant}|abandoned_cart|c1|", "p1", "cancelled: purchased", prefix=True)
    applied = await write(engine, tenant, cancel, event_id="e-2")
    assert [(r.outcome, r.idempotency_key, r.reason) for _, r in applied.rows] == [
        ("cancelled", key, "cancelled: purchased") for key in stages]
    again = await write(engine, tenant, cancel, event_id="e-3")
    assert [(r.outcome, r.idempotency_key) for _, r in again.rows] == [("cancelled", None)]
