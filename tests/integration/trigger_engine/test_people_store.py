"""One contact per person against the real PostgreSQL: the alias table, the handler's batches, merges,
number changes, the marketing stop and the migration of contacts recorded before aliases existed."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event
from scrm_common.db import make_engine, migrate
from scrm_common.kafka.consumer import Item
from tests.unit.trigger_engine.factories import (
    PHONE,
    T0,
    contact_created,
    contact_updated,
    inbound,
    marketing_changed,
    number_changed,
    payment,
)
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.domain.identity import text_aliases
from trigger_engine.domain.model import EngineConfig
from trigger_engine.handlers import EngineMetrics, EventHandler, StaticConfigs
from trigger_engine.main import MIGRATIONS, SCHEMA

NOW = T0 + timedelta(seconds=30)


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
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def handler_for(engine: AsyncEngine) -> EventHandler:
    return EventHandler(engine=engine, repository=EngineRepository(), clock=FixedClock(NOW),
                        configs=StaticConfigs(lambda t: EngineConfig(tenant=t, account_id="acct-1")),
                        metrics=EngineMetrics(CollectorRegistry()), on_commit=lambda: None)


async def apply(engine: AsyncEngine, tenant: str, *events: Event) -> None:
    """One batch, as the consumer would hand it over."""
    items: Sequence[Item[EventRecord]] = [Item(None, EventRecord(tenant, e, NOW, None)) for e in events]  # type: ignore[arg-type]
    await handler_for(engine)(items)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def commands(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    found = [json.loads(r["value"]) for r in await rows(engine, "SELECT value FROM outbox ORDER BY id")]
    return [c for c in found if c["tenant"] == tenant]


async def decisions(engine: AsyncEngine, tenant: str) -> list[dict[str, Any]]:
    return await rows(engine, "SELECT contact_key, flow, outcome, reason, idempotency_key FROM decisions "
                              "WHERE tenant = :t ORDER BY id", t=tenant)


async def person_of(engine: AsyncEngine, tenant: str, identity: str) -> str | None:
    async with engine.connect() as conn:
        return await EngineRepository().person_for(conn, tenant, text_aliases(identity))


@pytest.mark.parametrize("one_batch", [False, True])
async def test_guest_then_customer_with_the_same_phone_get_exactly_one_welcome(engine, tenant, one_batch):
    guest = contact_created(external_id="guest-777", phone=PHONE, name="Anna")
    customer = contact_created(external_id="cust-777", phone=PHONE, name="Anna Schmidt")
    if one_batch:
        await apply(engine, tenant, guest, customer)
    else:
        await apply(engine, tenant, guest)
        await apply(engine, tenant, customer)

    sent = await commands(engine, tenant)
    assert [(c["flow"], c["contact_key"], c["idempotency_key"]) for c in sent] == [
        ("welcome", "guest-777", f"{tenant}|welcome|guest-777")]
    logged = await decisions(engine, tenant)
    assert [(d["contact_key"], d["outcome"], d["reason"]) for d in logged] == [
        ("guest-777", "send", None),
        ("guest-777", "suppressed", "duplicate: a message was already decided for this key")]
    assert await person_of(engine, tenant, "cust-777") == await person_of(engine, tenant, PHONE) == "guest-777"
    people = await rows(engine, "SELECT contact_key, name FROM contacts WHERE tenant = :t", t=tenant)
    assert people == [{"contact_key": "guest-777", "name": "Anna Schmidt"}]


@pytest.mark.parametrize("one_batch", [False, True])
async def test_a_welcomed_person_merged_into_another_identity_is_not_welcomed_again(engine, tenant, one_batch):
    guest = contact_created(external_id="guest-777", phone=PHONE, name="Anna")
    cart_of_customer = contact_updated(external_id="cust-777", name="Anna")  # the shop's id, no number yet
    customer = contact_created(external_id="cust-777", phone=PHONE, name="Anna")  # created late: reordered
    if one_batch:
        await apply(engine, tenant, guest, cart_of_customer, customer)
    else:
        for event in (guest, cart_of_customer, customer):
            await apply(engine, tenant, event)

    sent = await commands(engine, tenant)
    # Decided before the merge, under the guest's key; in the merging batch, under the person's.
    welcomed = "cust-777" if one_batch else "guest-777"
    assert [(c["flow"], c["idempotency_key"]) for c in sent] == [("welcome", f"{tenant}|welcome|{welcomed}")]
    logged = await decisions(engine, tenant)
    assert [(d["contact_key"], d["outcome"], d["reason"]) for d in logged] == [
        ("cust-777", "send", None),
        ("cust-777", "suppressed", "duplicate: a message was already decided for this key")]
    # A redelivery of the guest's creation after the merge is still one welcome.
    await apply(engine, tenant, contact_created(external_id="guest-777", phone=PHONE, name="Anna"))
    assert len(await commands(engine, tenant)) == 1


async def test_two_batches_at_once_naming_one_new_person_create_it_once(engine, tenant):
    for attempt in range(5):  # separate consumers, separate partitions, the same moment
        phone = f"+491511234{attempt:04d}"
        await asyncio.gather(apply(engine, tenant, contact_created(external_id=f"guest-{attempt}", phone=phone)),
                             apply(engine, tenant, contact_created(external_id=f"cust-{attempt}", phone=phone)))
    sent = await commands(engine, tenant)
    assert len(sent) == 5, [c["contact_key"] for c in sent]
    people = await rows(engine, "SELECT count(*) AS n FROM contacts WHERE tenant = :t", t=tenant)
    assert people == [{"n": 5}]


class _PausingAfterMerge(EngineRepository):
    """The merging batch: after writing the merge, it waits (holding its transaction) until `go`."""

    def __init__(self, paused: asyncio.Event, go: Callable[[], Awaitable[None]]) -> None:
        self._paused, self._go = paused, go

    async def save_aliases(self, conn, aliases, now):  # type: ignore[no-untyped-def]
        await super().save_aliases(conn, aliases, now)
        self._paused.set()
        await self._go()


class _SignallingLoad(EngineRepository):
    """The other batch: says when it has read the profiles it will write back."""

    def __init__(self, loaded: asyncio.Event) -> None:
        self._loaded = loaded

    async def load_profiles(self, conn, keys):  # type: ignore[no-untyped-def]
        found = await super().load_profiles(conn, keys)
        self._loaded.set()
        return found


async def _waits_for_a_lock(engine: AsyncEngine) -> bool:
    found = await rows(engine, "SELECT count(*) AS n FROM pg_locks WHERE NOT granted AND database = "
                               "(SELECT oid FROM pg_database WHERE datname = current_database())")
    return found[0]["n"] > 0


async def test_a_batch_touching_a_person_while_another_merges_it_away_follows_the_merge(engine, tenant):
    await apply(engine, tenant, contact_created(external_id="cust-1", phone=None, name="Anna"),
                contact_created(external_id="guest-1", phone=PHONE))
    paused, loaded = asyncio.Event(), asyncio.Event()

    async def until_the_other_batch_has_loaded_or_waits() -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while not loaded.is_set() and not await _waits_for_a_lock(engine):
            assert asyncio.get_running_loop().time() < deadline, "the other batch neither loaded nor waited"
            await asyncio.sleep(0.005)

    def handler(repository: EngineRepository) -> EventHandler:
        return EventHandler(engine=engine, repository=repository, clock=FixedClock(NOW),
                            configs=StaticConfigs(lambda t: EngineConfig(tenant=t, account_id="acct-1")),
                            metrics=EngineMetrics(CollectorRegistry()), on_commit=lambda: None)

    def batch(event: Event) -> list[Item[EventRecord]]:
        return [Item(None, EventRecord(tenant, event, NOW, None))]  # type: ignore[arg-type]

    # Consumer 1: the shop says guest-1's phone is cust-1's — guest-1 is merged into cust-1.
    merging = asyncio.create_task(handler(_PausingAfterMerge(paused, until_the_other_batch_has_loaded_or_waits))(
        batch(contact_updated(external_id="cust-1", phone=PHONE))))
    await asyncio.wait_for(paused.wait(), 10)
    # Consumer 2, meanwhile: an update naming guest-1 only.
    other = asyncio.create_task(handler(_SignallingLoad(loaded))(
        batch(contact_updated(external_id="guest-1", name="Anna Schmidt"))))
    await asyncio.wait_for(asyncio.gather(merging, other), 20)

    people = await rows(engine, "SELECT contact_key, phone, name FROM contacts WHERE tenant = :t", t=tenant)
    assert people == [{"contact_key": "cust-1", "phone": PHONE, "name": "Anna Schmidt"}]
    owners = await rows(engine, "SELECT DISTINCT person FROM contact_aliases WHERE tenant = :t", t=tenant)
    assert owners == [{"person": "cust-1"}]


@pytest.mark.parametrize(("shop_phone", "wa_id"), [
    ("+525512345678", "5215512345678"), ("+5511999998888", "551199998888"), ("+5491123456789", "541123456789"),
])
async def test_a_webhook_naming_only_the_wa_id_reaches_the_person_the_shop_stored(engine, tenant, shop_phone, wa_id):
    await apply(engine, tenant, contact_created(external_id="cust-mx", phone=shop_phone, name="Lucía"))
    await apply(engine, tenant, inbound(wa_id=wa_id, profile_name="🦄 Lucky"))

    people = await rows(engine, "SELECT contact_key, phone, wa_id, name, profile_name FROM contacts "
                                "WHERE tenant = :t", t=tenant)
    assert people == [{"contact_key": "cust-mx", "phone": shop_phone, "wa_id": wa_id, "name": "Lucía",
                       "profile_name": "🦄 Lucky"}]
    for identity in ("cust-mx", shop_phone, wa_id, "+" + wa_id):
        assert await person_of(engine, tenant, identity) == "cust-mx", identity


async def test_a_number_change_moves_the_person_and_the_old_number_stays_an_alias(engine, tenant):
    await apply(engine, tenant, contact_created(external_id="cust-1", phone="+4915112345678", name="Anna"))
    await apply(engine, tenant, number_changed(old_wa_id="4915112345678", new_wa_id="4915198765432"))
    await apply(engine, tenant, payment(external_id=None, phone="+4915198765432", order_id="N-1"))

    [person] = await rows(engine, "SELECT contact_key, phone, wa_id FROM contacts WHERE tenant = :t", t=tenant)
    assert person == {"contact_key": "cust-1", "phone": "+4915198765432", "wa_id": "4915198765432"}
    assert await person_of(engine, tenant, "+4915112345678") == "cust-1"
    confirmation = (await commands(engine, tenant))[-1]
    assert (confirmation["flow"], confirmation["contact_key"], confirmation["to"]) == (
        "order_confirmation", "cust-1", "+4915198765432")


async def test_a_former_number_the_shop_gives_to_someone_else_is_handed_over(engine, tenant):
    await apply(engine, tenant, contact_created(external_id="anna", phone="+4915112345678", name="Anna"))
    await apply(engine, tenant, number_changed(old_wa_id="4915112345678", new_wa_id="4915198765432"))
    await apply(engine, tenant, contact_created(external_id="carl", phone="+4915112345678", name="Carl"),
                payment(external_id="anna", phone=None, order_id="A-2"))

    people = await rows(engine, "SELECT contact_key, phone, name FROM contacts WHERE tenant = :t "
                                "ORDER BY contact_key", t=tenant)
    assert people == [{"contact_key": "anna", "phone": "+4915198765432", "name": "Anna"},
                      {"contact_key": "carl", "phone": "+4915112345678", "name": "Carl"}]
    issued = await commands(engine, tenant)
    sent = [(c["flow"], c["contact_key"], c["to"]) for c in issued if c.get("action") != "withdraw"]
    assert sent == [("welcome", "anna", "+4915112345678"), ("welcome", "carl", "+4915112345678"),
                    ("order_confirmation", "anna", "+4915198765432")]
    # Anna's first purchase within the welcome's window withdraws her welcome if it still waits.
    assert [(c["flow"], c["contact_key"]) for c in issued if c.get("action") == "withdraw"] == [("welcome", "anna")]
    assert await person_of(engine, tenant, "+4915112345678") == "carl"


async def test_an_event_showing_two_persons_are_one_merges_them_with_their_history(engine, tenant):
    await apply(engine, tenant, contact_created(external_id="cust-1", phone=PHONE, name="Anna"))
    await apply(engine, tenant, contact_created(external_id="guest-2", phone="+4915198765432"))
    await apply(engine, tenant, payment(external_id="cust-1", phone="+4915198765432", order_id="M-1"))

    people = await rows(engine, "SELECT contact_key, phone, name FROM contacts WHERE tenant = :t", t=tenant)
    assert people == [{"contact_key": "cust-1", "phone": "+4915198765432", "name": "Anna"}]
    assert await person_of(engine, tenant, "guest-2") == "cust-1"
    logged = await decisions(engine, tenant)
    assert {d["contact_key"] for d in logged} == {"cust-1"}, "guest-2's welcome is in cust-1's history now"
    assert sorted((d["flow"], d["outcome"]) for d in logged) == [
        ("order_confirmation", "send"), ("welcome", "send"), ("welcome", "send"), ("welcome", "withdrawn"),
        ("welcome", "withdrawn")]
    # the first purchase withdraws both waiting welcomes: the buyer's and the one of the person merged into them
    both = [f"{tenant}|welcome|cust-1", f"{tenant}|welcome|guest-2"]
    assert [d["idempotency_key"] for d in logged if d["outcome"] == "withdrawn"] == both
    withdrawals = [c for c in await commands(engine, tenant) if c.get("action") == "withdraw"]
    assert [(c["idempotency_key"], c["contact_key"], c["reason"], c.get("account_id")) for c in withdrawals] == [
        (key, "cust-1", "cancelled: purchased", "acct-1") for key in both]


async def test_a_welcome_merged_into_the_buyer_in_the_purchases_own_batch_is_withdrawn_too(engine, tenant):
    await apply(engine, tenant, contact_created(external_id="cust-1", phone=PHONE, name="Anna"),
                contact_created(external_id="guest-2", phone="+4915198765432"))
    await apply(engine, tenant, contact_updated(external_id="cust-1", phone="+4915198765432"),
                payment(external_id="cust-1", phone="+4915198765432", order_id="M-2"))

    withdrawn = [d["idempotency_key"] for d in await decisions(engine, tenant) if d["outcome"] == "withdrawn"]
    assert withdrawn == [f"{tenant}|welcome|cust-1", f"{tenant}|welcome|guest-2"]


async def test_a_later_purchase_withdraws_no_merged_welcome(engine, tenant):
    await apply(engine, tenant, contact_created(external_id="cust-1", phone=PHONE, name="Anna"),
                contact_created(external_id="guest-2", phone="+4915198765432"))
    await apply(engine, tenant, payment(external_id="cust-1", phone=PHONE, order_id="F-1"))
    await apply(engine, tenant, payment(external_id="cust-1", phone="+4915198765432", order_id="F-2",
                                        at=T0 + timedelta(seconds=5)))

    withdrawn = [d["idempotency_key"] for d in await decisions(engine, tenant) if d["outcome"] == "withdrawn"]
    assert withdrawn == [f"{tenant}|welcome|cust-1"], "only a first purchase withdraws"


async def test_a_customer_who_stopped_marketing_gets_no_welcome_and_the_reason_is_logged(engine, tenant):
    await apply(engine, tenant, marketing_changed("stop", wa_id=PHONE[1:]))
    await apply(engine, tenant, contact_created(external_id="cust-1", phone=PHONE, at=T0 + timedelta(seconds=10)))

    assert await commands(engine, tenant) == []
    [decision] = await decisions(engine, tenant)
    assert (decision["flow"], decision["outcome"], decision["reason"]) == (
        "welcome", "suppressed", "customer stopped marketing messages")
    [person] = await rows(engine, "SELECT marketing, marketing_changed_at FROM contacts WHERE tenant = :t", t=tenant)
    assert person == {"marketing": "stop", "marketing_changed_at": T0}


async def test_a_duplicate_event_is_logged_against_the_person(engine, tenant):
    await apply(engine, tenant, contact_created(external_id="guest-1", phone=PHONE))
    again = payment(external_id="cust-1", phone=PHONE, order_id="D-1", event_id=f"pay-{tenant}")
    await apply(engine, tenant, again)
    await apply(engine, tenant, again)
    logged = await decisions(engine, tenant)
    assert [(d["contact_key"], d["flow"], d["outcome"]) for d in logged] == [
        ("guest-1", "welcome", "send"), ("guest-1", "welcome", "withdrawn"), ("guest-1", "order_confirmation", "send"),
        ("guest-1", "order_confirmation", "suppressed")]


async def test_contacts_recorded_before_aliases_become_persons_known_by_key_and_phone(
        database_url: str, tmp_path: Path) -> None:
    schema = "te_backfill"
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name < "003":
            shutil.copy(path, before / path.name)
    engine = make_engine(database_url, schema=schema, pool_size=2)
    try:
        await migrate(engine, schema=schema, directory=before)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO contacts(tenant, contact_key, phone, updated_at) VALUES "
                "('old', 'cust-1', '+525512345678', now()), ('old', '+4915112345678', '+4915112345678', now()), "
                "('old', 'cust-2', NULL, now())"))
        applied = await migrate(engine, schema=schema, directory=MIGRATIONS)
        assert applied[0] == "003_people.sql", applied  # later migrations follow it
        aliases = await rows(engine, "SELECT alias, person FROM contact_aliases ORDER BY alias")
        assert aliases == [
            {"alias": "ext:cust-1", "person": "cust-1"}, {"alias": "ext:cust-2", "person": "cust-2"},
            {"alias": "tel:+4915112345678", "person": "+4915112345678"},
            {"alias": "tel:+525512345678", "person": "cust-1"}]
        # A webhook from WhatsApp's other form of a number recorded before match keys still finds its person.
        async with engine.connect() as conn:
            assert await EngineRepository().person_for(conn, "old", text_aliases("5215512345678")) == "cust-1"
    finally:
        await engine.dispose()


async def test_stated_preferences_are_kept_with_the_person_and_reach_the_send_command(engine, tenant):
    """R-G4, R-S5: preferences stated on an event naming no phone are stored and ride on a later marketing send
    (a utility send carries none: the gate holds no utility message by them)."""
    stated = contact_updated(external_id="cust-1", at=T0)
    stated = stated.model_copy(update={"data": stated.data.model_validate(
        {"preferences": {"max_promotions_per_week": 1, "tier": "gold"}})})
    await apply(engine, tenant, stated)
    [person] = await rows(engine, "SELECT preferences FROM contacts WHERE tenant = :t", t=tenant)
    assert person == {"preferences": {"max_promotions_per_week": 1, "tier": "gold"}}

    await apply(engine, tenant, contact_created(external_id="cust-1", phone=PHONE, at=T0 + timedelta(seconds=1)))
    await apply(engine, tenant, payment(external_id="cust-1", phone=PHONE, order_id="P-1"))
    sent = {c["flow"]: c for c in await commands(engine, tenant) if c.get("action") != "withdraw"}
    assert sent["welcome"]["preferences"] == {"max_promotions_per_week": 1, "tier": "gold"}
    assert "preferences" not in sent["order_confirmation"] and "policy" not in sent["order_confirmation"]
