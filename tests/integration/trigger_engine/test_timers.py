"""Durable timers against the real PostgreSQL: what every decision kind writes (DecisionWriter), and the timer
loop — fired exactly once across concurrent passes, expired never fired, a person locked by an event batch
left for the next pass, woken at once by a batch that schedules something due now."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock, SystemClock
from scrm_common.contracts.commands import GatePolicy, QuietHours, SendMessage, WithdrawMessage, parse_command
from scrm_common.contracts.envelope import EventRecord
from scrm_common.db import make_engine, migrate
from scrm_common.kafka.consumer import Item
from tests.unit.trigger_engine.factories import PHONE, T0, contact_created
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.timers import TimerRepository
from trigger_engine.domain.decide import TIMER_FLOWS
from trigger_engine.domain.decisions import Cancel, Decision, Schedule, Send, Suppress, Withdraw
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.timers import Timer
from trigger_engine.handlers import Cause, DecisionWriter, EngineMetrics, EventHandler, StaticConfigs
from trigger_engine.main import MIGRATIONS, SCHEMA
from trigger_engine.timers import TimerLoop, TimerMetrics

NOW = T0 + timedelta(minutes=31)
FLOW = "test_timer"


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=6)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


@pytest.fixture
async def tenant(engine: AsyncEngine) -> AsyncIterator[str]:
    yield f"t{uuid.uuid4().hex[:10]}"
    # The loop claims whatever is due, of any tenant: leave nothing pending for the next test.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE timers SET state = 'cancelled' WHERE state = 'pending'"))


def _test_flow(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """A flow for these tests: does what the timer's payload says."""
    do = timer.payload.get("do")
    if do == "send":
        return (Send(FLOW, f"{timer.key}|msg", "marketing", profile.contact_key, PHONE, "welcome_discount", "en_US",
                     ("Anna",), account_id=config.account_id, expires_at=now + timedelta(minutes=5),
                     policy=GatePolicy(quiet_hours=QuietHours()), timezone="Europe/Berlin"),)
    if do == "again":  # the flow re-arms its own key
        return (Schedule(FLOW, timer.key, profile.contact_key, now + timedelta(hours=1), payload={"n": 2}),)
    if do == "raise":
        raise RuntimeError("flow bug")
    return (Suppress(FLOW, f"seen {timer.key}", profile.contact_key, timer.key),)


@pytest.fixture(autouse=True)
def test_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(TIMER_FLOWS, FLOW, _test_flow)


CONFIGS = StaticConfigs(lambda t: EngineConfig(tenant=t, account_id="acct-1"))


def loop_for(engine: AsyncEngine, clock: Any = None, **kw: Any) -> TimerLoop:
    registry = CollectorRegistry()
    return TimerLoop(engine=engine, repository=EngineRepository(), timers=TimerRepository(), configs=CONFIGS,
                     clock=clock or FixedClock(NOW), metrics=EngineMetrics(registry),
                     timer_metrics=TimerMetrics(registry), on_commit=lambda: None, **kw)


async def write(engine: AsyncEngine, tenant: str, *decisions: Decision, at: datetime = NOW) -> None:
    """Carry out `decisions` as one event batch's (cause: event e-1 of `tenant`)."""
    cause = Cause(tenant, "e-1", "contact.created", T0, T0, "corr-1")
    async with engine.begin() as conn:
        await DecisionWriter(EngineRepository(), TimerRepository()).apply(conn, [(cause, d) for d in decisions], at)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(text(sql), params)]


async def timers(engine: AsyncEngine, tenant: str) -> dict[str, dict[str, Any]]:
    found = await rows(engine, "SELECT key, contact_key, state, reason, due_at, payload, event_id FROM timers "
                               "WHERE tenant = :t", t=tenant)
    return {r["key"]: r for r in found}


async def decisions(engine: AsyncEngine, tenant: str) -> list[tuple[str, str, str | None, str | None]]:
    found = await rows(engine, "SELECT event_type, outcome, reason, idempotency_key FROM decisions "
                               "WHERE tenant = :t ORDER BY id", t=tenant)
    return [(r["event_type"], r["outcome"], r["reason"], r["idempotency_key"]) for r in found]


async def outbox(engine: AsyncEngine, tenant: str) -> list[SendMessage | WithdrawMessage]:
    found = [parse_command(bytes(r["value"])) for r in await rows(engine, "SELECT value FROM outbox ORDER BY id")]
    return [c for c in found if c.tenant == tenant]


def schedule(key: str, contact: str = "cust-1", due: datetime = NOW, **kw: Any) -> Schedule:
    return Schedule(FLOW, key, contact, due, **kw)


async def test_schedule_keeps_a_pending_timer_and_says_when_it_is_due(engine, tenant):
    due = T0 + timedelta(minutes=30)
    await write(engine, tenant, schedule("k1", due=due, expires_at=due + timedelta(minutes=15), payload={"a": [1]}))

    kept = await timers(engine, tenant)
    assert kept["k1"]["state"] == "pending" and kept["k1"]["due_at"] == due and kept["k1"]["event_id"] == "e-1"
    assert kept["k1"]["payload"] == {"a": [1]}
    assert await decisions(engine, tenant) == [("contact.created", "scheduled", f"due at {due.isoformat()}", "k1")]


async def test_scheduling_a_key_again_re_arms_it_whatever_its_state(engine, tenant):
    await write(engine, tenant, schedule("k1", payload={"do": "note"}))
    assert (await loop_for(engine).fire_once()).fired == 1
    assert (await timers(engine, tenant))["k1"]["state"] == "fired"

    later = NOW + timedelta(hours=2)
    await write(engine, tenant, schedule("k1", due=later, payload={"n": 2}))
    kept = (await timers(engine, tenant))["k1"]
    assert (kept["state"], kept["due_at"], kept["payload"], kept["reason"]) == ("pending", later, {"n": 2}, None)
    assert (await loop_for(engine).fire_once()).fired == 0  # not due yet
    assert (await loop_for(engine, FixedClock(later)).fire_once()).fired == 1


async def test_cancel_cancels_the_contacts_pending_timer_of_that_key_only(engine, tenant):
    await write(engine, tenant, schedule("k1"), schedule("k2"), schedule("k1-other", contact="cust-2"))
    await write(engine, tenant, Cancel(FLOW, "k1", "cust-1", "cancelled: purchased"),
                Cancel(FLOW, "k1-other", "cust-1", "cancelled: not theirs"))

    kept = await timers(engine, tenant)
    assert {k: (t["state"], t["reason"]) for k, t in kept.items()} == {
        "k1": ("cancelled", "cancelled: purchased"), "k2": ("pending", None), "k1-other": ("pending", None)}
    assert (await decisions(engine, tenant))[-2:] == [
        ("contact.created", "cancelled", "cancelled: purchased", "k1"),
        ("contact.created", "cancelled", "cancelled: not theirs", "k1-other")]
    fired = await loop_for(engine).fire_once()
    assert fired.fired == 2  # k2 and k1-other; the cancelled one never fires
    assert (await timers(engine, tenant))["k1"]["state"] == "cancelled"


async def test_prefix_cancel_cancels_every_pending_stage_and_leaves_settled_ones(engine, tenant):
    await write(engine, tenant, schedule("cart|c1|1", payload={"do": "note"}))
    assert (await loop_for(engine).fire_once()).fired == 1
    await write(engine, tenant, schedule("cart|c1|2", due=NOW + timedelta(hours=1)),
                schedule("cart|c1|3", due=NOW + timedelta(hours=2)), schedule("cart|c10|1"), schedule("cartx"))
    await write(engine, tenant, Cancel(FLOW, "cart|c1|", "cust-1", "cancelled: purchased", prefix=True))

    assert {k: t["state"] for k, t in (await timers(engine, tenant)).items()} == {
        "cart|c1|1": "fired", "cart|c1|2": "cancelled", "cart|c1|3": "cancelled", "cart|c10|1": "pending",
        "cartx": "pending"}


async def test_schedules_and_cancels_of_one_batch_take_effect_in_order(engine, tenant):
    await write(engine, tenant, schedule("a"), Cancel(FLOW, "a", "cust-1", "cancelled: first"),
                Cancel(FLOW, "b", "cust-1", "cancelled: nothing yet"), schedule("b"))
    assert {k: t["state"] for k, t in (await timers(engine, tenant)).items()} == {"a": "cancelled", "b": "pending"}


async def test_an_expired_timer_is_recorded_as_expired_and_never_fired(engine, tenant):
    due = NOW - timedelta(hours=8)
    await write(engine, tenant, schedule("late", due=due, expires_at=due + timedelta(minutes=15),
                                         payload={"do": "send"}))
    done = await loop_for(engine).fire_once()

    assert (done.fired, done.expired) == (0, 1)
    kept = (await timers(engine, tenant))["late"]
    reason = f"expired: due {due.isoformat()}, seen {NOW.isoformat()}"
    assert (kept["state"], kept["reason"]) == ("expired", reason)
    assert (await decisions(engine, tenant))[-1] == ("timer", "expired", reason, "late")
    assert await outbox(engine, tenant) == []


async def test_a_send_carries_the_decisions_expiry_policy_and_zone(engine, tenant):
    policy = GatePolicy(quiet_hours_exempt=True)
    await write(engine, tenant, Send(FLOW, "m1", "marketing", "cust-1", PHONE, "welcome_discount", "en_US", ("A",),
                                     account_id="acct-1", expires_at=T0 + timedelta(minutes=15), policy=policy,
                                     timezone="America/Sao_Paulo"))
    [command] = await outbox(engine, tenant)
    assert isinstance(command, SendMessage)
    assert (command.expires_at, command.policy, command.timezone) == (
        T0 + timedelta(minutes=15), policy, "America/Sao_Paulo")
    assert (command.event_id, command.event_occurred_at, command.event_ingested_at, command.correlation_id) == (
        "e-1", T0, T0, "corr-1")
    assert await decisions(engine, tenant) == [("contact.created", "send", None, "m1")]
    await write(engine, tenant, Send(FLOW, "m1", "marketing", "cust-1", PHONE, "welcome_discount", "en_US", ("A",),
                                     account_id="acct-1"))
    assert len(await outbox(engine, tenant)) == 1
    assert (await decisions(engine, tenant))[-1] == (
        "contact.created", "suppressed", "duplicate: a message was already decided for this key", "m1")


async def test_a_fired_timer_sends_naming_the_event_that_scheduled_it(engine, tenant):
    await write(engine, tenant, schedule("k1", payload={"do": "send"}))
    await loop_for(engine).fire_once()

    [command] = await outbox(engine, tenant)
    assert isinstance(command, SendMessage)
    assert (command.idempotency_key, command.event_id, command.event_occurred_at, command.correlation_id) == (
        "k1|msg", "e-1", T0, "corr-1")
    assert command.decided_at == NOW and command.expires_at == NOW + timedelta(minutes=5)
    assert command.policy is not None
    assert (await decisions(engine, tenant))[-1] == ("timer", "send", None, "k1|msg")
    assert (await timers(engine, tenant))["k1"]["state"] == "fired"


async def test_withdraw_is_a_withdraw_command_keyed_like_the_send(engine, tenant):
    await write(engine, tenant, Withdraw(FLOW, "welcome-key", "cust-1", "withdrawn: first purchase",
                                         account_id="acct-1"))
    [command] = await outbox(engine, tenant)
    assert isinstance(command, WithdrawMessage)
    assert (command.idempotency_key, command.account_id, command.reason, command.kafka_key) == (
        "welcome-key", "acct-1", "withdrawn: first purchase", f"{tenant}:acct-1")
    assert await decisions(engine, tenant) == [
        ("contact.created", "withdrawn", "withdrawn: first purchase", "welcome-key")]
    key = (await rows(engine, "SELECT key FROM outbox ORDER BY id DESC LIMIT 1"))[0]["key"]
    assert bytes(key) == f"{tenant}:acct-1".encode()


async def test_a_flow_that_schedules_its_own_key_again_re_arms_it(engine, tenant):
    await write(engine, tenant, schedule("k1", payload={"do": "again"}))
    assert (await loop_for(engine).fire_once()).fired == 1
    kept = (await timers(engine, tenant))["k1"]
    assert (kept["state"], kept["due_at"], kept["payload"]) == ("pending", NOW + timedelta(hours=1), {"n": 2})


async def test_a_flow_failing_on_a_timer_does_not_stall_the_others(engine, tenant):
    await write(engine, tenant, schedule("bad", payload={"do": "raise"}), schedule("good", contact="cust-2"))
    assert (await loop_for(engine).fire_once()).fired == 2
    kept = await timers(engine, tenant)
    assert kept["bad"]["state"] == "fired" and "RuntimeError: flow bug" in kept["bad"]["reason"]
    assert kept["good"]["state"] == "fired"
    assert [d[1] for d in await decisions(engine, tenant)][-2:] == ["suppressed", "suppressed"]


async def insert_due(engine: AsyncEngine, tenant: str, n: int, due: datetime = NOW) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO timers(tenant, key, flow, contact_key, event_id, due_at) "
            "SELECT :t, 'k' || i, :f, 'p' || i, 'ev' || i, :due FROM generate_series(1, :n) AS i"),
            {"t": tenant, "f": FLOW, "due": due, "n": n})


async def test_concurrent_passes_fire_each_timer_exactly_once(engine, tenant):
    await insert_due(engine, tenant, 1200)
    loops = [loop_for(engine, batch_size=100) for _ in range(3)]

    async def drain(loop: TimerLoop) -> int:
        fired = 0
        while (done := await loop.fire_once()).settled or done.left:
            fired += done.fired
        return fired

    counts = await asyncio.gather(*(drain(loop) for loop in loops))
    assert sum(counts) == 1200 and all(counts), counts  # each pass took its own share
    per_event = await rows(engine, "SELECT event_id, count(*) AS n FROM decisions WHERE tenant = :t "
                                   "GROUP BY event_id HAVING count(*) <> 1", t=tenant)
    assert per_event == []
    assert (await rows(engine, "SELECT count(*) AS n FROM decisions WHERE tenant = :t", t=tenant))[0]["n"] == 1200
    states = await rows(engine, "SELECT state, count(*) AS n FROM timers WHERE tenant = :t GROUP BY state", t=tenant)
    assert states == [{"state": "fired", "n": 1200}]


async def test_a_person_locked_by_an_event_batch_is_skipped_then_fired(engine, tenant):
    await insert_due(engine, tenant, 3)
    loop = loop_for(engine)
    async with engine.connect() as batch:  # an event batch holding person p2's lock
        await batch.begin()
        await EngineRepository().lock_persons(batch, [(tenant, "p2")])
        done = await asyncio.wait_for(loop.fire_once(), timeout=10)  # never waits for the lock
        assert (done.fired, done.left) == (2, 1)
        assert {k: t["state"] for k, t in (await timers(engine, tenant)).items()} == {
            "k1": "fired", "k2": "pending", "k3": "fired"}
        await batch.commit()
    done = await loop.fire_once()
    assert (done.fired, done.left) == (1, 0)
    assert (await timers(engine, tenant))["k2"]["state"] == "fired"
    assert len(await decisions(engine, tenant)) == 3


async def test_a_pass_holds_no_timer_row_of_a_person_it_could_not_lock(engine, tenant):
    # The event batch holding p2 may write p2's timers while the pass is still open: the pass must not hold
    # them (it would wait on the batch's lock nowhere, but the batch would wait on the pass's rows).
    await insert_due(engine, tenant, 3)
    async with engine.connect() as batch, engine.connect() as timer_pass:
        await batch.begin()
        await EngineRepository().lock_persons(batch, [(tenant, "p2")])
        await timer_pass.begin()
        claim = await TimerRepository().claim_due(timer_pass, NOW, 100)
        assert sorted(c.timer.key for c in claim.timers) == ["k1", "k3"] and claim.skipped == 1
        await asyncio.wait_for(batch.execute(text(
            "UPDATE timers SET payload = '{\"touched\": true}' WHERE tenant = :t AND key = 'k2'"), {"t": tenant}),
            timeout=5)
        await batch.commit()
        # ... and keeps the persons it claimed: an event batch for p1 waits for the pass.
        other = await engine.connect()
        try:
            await other.begin()
            got = await other.execute(text(
                "SELECT pg_try_advisory_xact_lock(hashtextextended(:t || '|person:p1', 0))"), {"t": tenant})
            assert got.scalar() is False
            locked = await other.execute(text(
                "SELECT key FROM timers WHERE tenant = :t AND key IN ('k1', 'k3') FOR UPDATE SKIP LOCKED"),
                {"t": tenant})
            assert locked.all() == []
            await other.rollback()
        finally:
            await other.close()
        await timer_pass.rollback()


async def test_a_batch_that_schedules_something_due_now_wakes_the_loop(engine, tenant, monkeypatch):
    # An event dated 31 minutes ago whose flow waits 30 minutes: due now, fired at once (the loop polls only
    # every 60 s here, so only the wake-up can fire it in time).
    def decide(profile: ContactProfile, event: Any, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
        return (Schedule(FLOW, f"w|{profile.contact_key}", profile.contact_key,
                         event.occurred_at + timedelta(minutes=30), payload={"do": "note"}),)

    monkeypatch.setattr("trigger_engine.handlers.decide", decide)
    clock = SystemClock()
    loop = loop_for(engine, clock, poll_seconds=60)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.sleep(0)  # let the loop start and go idle (the first pass finds nothing of this tenant)
        handler = EventHandler(engine=engine, repository=EngineRepository(), clock=clock, configs=CONFIGS,
                               metrics=EngineMetrics(CollectorRegistry()), on_commit=lambda: None,
                               on_scheduled=loop.wake_at)
        event = contact_created(at=clock.now() - timedelta(minutes=31), external_id="cust-w", phone=PHONE)
        items: Sequence[Item[EventRecord]] = [Item(None, EventRecord(tenant, event, clock.now(), None))]  # type: ignore[arg-type]
        started = asyncio.get_running_loop().time()
        await handler(items)
        while (state := (await timers(engine, tenant)).get("w|cust-w", {}).get("state")) != "fired":
            assert asyncio.get_running_loop().time() - started < 2.0, f"not fired within 2 s: {state}"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        loop.wake()
        await asyncio.wait_for(running, timeout=5)
    assert [d[:2] for d in await decisions(engine, tenant)] == [("contact.created", "scheduled"), ("timer", "suppressed")]
    assert json.loads(json.dumps((await timers(engine, tenant))["w|cust-w"]["payload"])) == {"do": "note"}
