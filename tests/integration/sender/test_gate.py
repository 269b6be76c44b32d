"""The send gate in the dispatcher's path (issue 8) against the real PostgreSQL: every due queued message gets one
answer before R-S3 pacing picks — quiet hours defer (one `deferred` status however many passes look at it) and the
message goes when due, expiry / opt-out / the cap / the 24 h window / an invalid number / fatigue suppress it with
the rule, a withdrawal drops a message that was not handed to the provider yet (also when it came first)."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.commands import (
    Fatigue,
    FrequencyCap,
    GatePolicy,
    SendMessage,
    TemplateMessage,
    WithdrawMessage,
)
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import MessageStatus, Preferences, StatusData
from scrm_common.db import make_engine, migrate
from scrm_common.identity import match_key
from scrm_common.kafka.consumer import Item
from sender.adapters.cloud_api import Accepted, Rejected
from sender.adapters.db import Catalog, SendLog, default_catalog
from sender.adapters.http import MessageRead
from sender.adapters.templates import TemplateStore
from sender.domain.outcomes import RetryPolicy
from sender.handlers import CommandHandler, Dispatcher, EvidenceHandler, SenderMetrics
from sender.main import MIGRATIONS, SCHEMA

# 23:30 in Berlin (CET): inside quiet hours; the next allowed instant is 08:00 CET = 07:00Z.
NIGHT = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
MORNING = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
DAY = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 11:00 in Berlin
WELCOME = ["Ana", "10", "WELCOME10", "Friday"]
ORDER = ["A1", "Ana", "1 item", "10,00 €", "0,00 €", "10,00 €", "https://t.example/1", "Shop"]
_seq = itertools.count(1)


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    yield engine
    await engine.dispose()


@dataclass
class Api:
    """The provider: accepts everything, records what its shop's account sent (a dispatcher serves every
    tenant's due work, another test's leftovers included)."""

    account: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    # The next call of this account runs this while the message is `sending` and answers what it returns.
    during: Callable[[], Awaitable[Rejected]] | None = None

    async def send(self, *, phone_number_id: str, access_token: str,  # noqa: ARG002
                   body: dict[str, Any]) -> Accepted | Rejected:
        if phone_number_id == self.account:
            self.calls.append(body)
            if self.during is not None:
                during, self.during = self.during, None
                return await during()
        return Accepted(f"wamid.{uuid.uuid4().hex}", body["to"].lstrip("+"), body["to"], "accepted")


@dataclass
class Shop:
    name: str
    account: str
    clock: FixedClock
    api: Api
    engine: AsyncEngine
    registry: CollectorRegistry
    commands: CommandHandler
    dispatcher: Dispatcher
    evidence: EvidenceHandler

    def send(self, *, contact: str | None = None, phone: str | None = None, category: str = "marketing",
             free_text: str | None = None, **extra: Any) -> SendMessage:
        n = next(_seq)
        template = None if free_text else (
            TemplateMessage(name="welcome", language="en_US", parameters=WELCOME) if category == "marketing"
            else TemplateMessage(name="order_confirmation", language="en_US", parameters=ORDER))
        return SendMessage(
            idempotency_key=f"{self.name}|{category}|{n}", tenant=self.name, account_id=self.account,
            flow="welcome" if category == "marketing" else "order_confirmation", category=category,  # type: ignore[arg-type]
            contact_key=contact or f"c{n}", to=phone or f"+49151{random.randint(10_000_000, 99_999_999)}",
            template=template, text=free_text, event_id=f"ev-{n}", event_occurred_at=self.clock.now(),
            decided_at=self.clock.now(), **extra)

    def withdraw(self, command: SendMessage, reason: str = "first purchase: the welcome is pointless") -> WithdrawMessage:
        return WithdrawMessage(action="withdraw", idempotency_key=command.idempotency_key, tenant=self.name,
                               account_id=self.account, contact_key=command.contact_key, flow=command.flow,
                               reason=reason, decided_at=self.clock.now())

    async def queue(self, *commands: SendMessage | WithdrawMessage) -> None:
        await self.commands([Item(None, c) for c in commands])  # type: ignore[arg-type]

    async def passes(self, n: int = 1, *, step: timedelta = timedelta(0)) -> None:
        """`n` dispatch passes, the clock moved by `step` before each."""
        for _ in range(n):
            self.clock.advance(step)
            await self.dispatcher.dispatch_once()

    async def row(self, key: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = await SendLog().message(conn, self.name, key)
        assert row is not None
        return row

    async def statuses(self, key: str) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT value FROM outbox ORDER BY id"))).all()
        events = [json.loads(r.value) for r in rows]
        return [e["data"] | {"event_id": e["event_id"]} for e in events
                if e["type"] == "message.status" and e["data"].get("idempotency_key") == key]

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(text(sql), {"t": self.name} | params)

    async def reachable(self, phone: str, **columns: Any) -> None:
        """A reachability record for `phone`, as the reachability consumer keeps it."""
        names = ", ".join(columns)
        values = ", ".join(f":{c}" for c in columns)
        await self.execute(f"INSERT INTO reachability(tenant, number, updated_at, {names}) "
                           f"VALUES (:t, :n, :now, {values})", n=match_key(phone), now=self.clock.now(), **columns)

    def gate_count(self, verdict: str, rule: str) -> float:
        return self.registry.get_sample_value("scrm_sender_gate_total", {"verdict": verdict, "rule": rule}) or 0.0


async def _shop(engine: AsyncEngine, at: datetime) -> Shop:
    name = f"t{uuid.uuid4().hex[:10]}"
    account = str(random.randint(10**14, 10**15 - 1))
    clock = FixedClock(at)
    log = SendLog()
    async with engine.begin() as conn:
        await log.bootstrap(conn, tenant=name, account_id=account, access_token="tok", throughput=80.0,
                            created_at=at - timedelta(days=30), waba_id=f"waba-{name}")
        await TemplateStore().seed(conn, f"waba-{name}", default_catalog(), at)
    registry = CollectorRegistry()
    metrics = SenderMetrics(registry)
    api = Api(account)
    retry = RetryPolicy(max_attempts=3)
    catalog = Catalog(engine)
    return Shop(
        name, account, clock, api, engine, registry,
        CommandHandler(engine=engine, log_=log, catalog=catalog, clock=clock, metrics=metrics, on_commit=lambda: None),
        Dispatcher(engine=engine, log_=log, client=api, clock=clock, metrics=metrics, retry=retry,  # type: ignore[arg-type]
                   poll_seconds=0.01, doubt_timeout=timedelta(seconds=30), on_commit=lambda: None,
                   evidence_caught_up=lambda: None, rng=random.Random(7)),
        EvidenceHandler(engine=engine, log_=log, metrics=metrics, clock=clock, retry=retry, catalog=catalog,
                        rng=random.Random(7)))


@pytest.fixture
async def night(engine: AsyncEngine) -> Shop:
    return await _shop(engine, NIGHT)


@pytest.fixture
async def day(engine: AsyncEngine) -> Shop:
    return await _shop(engine, DAY)


async def test_marketing_in_local_quiet_hours_is_deferred_once_and_goes_when_due(night: Shop) -> None:
    welcome = night.send()
    order = night.send(category="utility")
    await night.queue(welcome, order)
    await night.passes(5, step=timedelta(seconds=10))  # repeated passes publish one deferred status
    row = await night.row(welcome.idempotency_key)
    reason = "quiet hours 08:00–22:00 Europe/Berlin: deferred until 2026-12-02 08:00 CET (07:00Z)"
    assert (row["state"], row["rule"], row["deferred_until"], row["next_attempt_at"], row["error_reason"]) == (
        "queued", "R-S4", MORNING, MORNING, reason)
    assert (await night.row(order.idempotency_key))["state"] == "sent"  # utility is exempt
    assert [c["to"] for c in night.api.calls] == [order.to]
    [deferred] = await night.statuses(welcome.idempotency_key)
    assert (deferred["status"], deferred["rule"], deferred["error_reason"]) == ("deferred", "R-S4", reason)
    assert datetime.fromisoformat(deferred["deferred_until"]) == MORNING
    assert deferred["event_id"].endswith(f":deferred:{int(MORNING.timestamp())}")
    assert night.gate_count("deferred", "R-S4") == 1

    night.clock.advance(MORNING - night.clock.now())
    await night.passes()
    sent = await night.row(welcome.idempotency_key)
    # "deferred then sent": the rule and the instant stay on the row
    assert (sent["state"], sent["rule"], sent["deferred_until"]) == ("sent", "R-S4", MORNING)
    assert [s["status"] for s in await night.statuses(welcome.idempotency_key)] == ["deferred", "sent"]
    assert night.api.calls[-1]["to"] == welcome.to


async def test_a_deferral_past_the_expiry_and_an_expired_message_are_suppressed_expired(night: Shop) -> None:
    welcome = night.send(expires_at=night.clock.now() + timedelta(minutes=15))
    late = night.send(category="utility", expires_at=night.clock.now() - timedelta(seconds=1))
    await night.queue(welcome, late)
    await night.passes()
    for command in (welcome, late):
        row = await night.row(command.idempotency_key)
        assert (row["state"], row["rule"]) == ("suppressed", "EXPIRED")
        assert row["suppressed_at"] == night.clock.now()
        assert row["expires_at"] == command.expires_at
        shown = MessageRead.model_validate(row)  # GET /v1/messages shows it with its rule
        assert (shown.state, shown.rule, shown.suppressed_at, shown.expires_at) == (
            "suppressed", "EXPIRED", night.clock.now(), command.expires_at)
        [status] = await night.statuses(command.idempotency_key)
        assert (status["status"], status["rule"]) == ("suppressed", "EXPIRED")
        assert status["event_id"].endswith(":suppressed")
    assert "would defer it to 2026-12-02T07:00:00+00:00" in (await night.row(welcome.idempotency_key))["error_reason"]
    assert night.api.calls == []
    await night.passes(3, step=timedelta(hours=12))
    assert night.api.calls == []


async def test_a_fourth_marketing_message_in_seven_days_is_suppressed_with_the_count(day: Shop) -> None:
    phone = "+4915112345678"
    sent = [day.send(contact="ana", phone=phone) for _ in range(3)]
    for command in sent:  # one a day: each goes
        await day.queue(command)
        await day.passes(step=timedelta(days=1))
    assert [(await day.row(c.idempotency_key))["state"] for c in sent] == ["sent"] * 3
    fourth = day.send(contact="ana", phone=phone)
    await day.queue(fourth)
    await day.passes(step=timedelta(seconds=10))
    row = await day.row(fourth.idempotency_key)
    assert (row["state"], row["rule"], row["error_reason"]) == (
        "suppressed", "R-S5", "3 marketing messages in the last 7 days; the limit is 3")
    assert [s["status"] for s in await day.statuses(fourth.idempotency_key)] == ["suppressed"]
    assert len(day.api.calls) == 3
    assert day.gate_count("suppressed", "R-S5") == 1


async def test_a_marketing_message_picked_in_a_pass_counts_for_the_next_one_in_the_same_pass(day: Shop) -> None:
    first = day.send(contact="bo", phone="+4915155555555")
    await day.reachable(first.to, preferences=json.dumps({"max_promotions_per_week": 1}))
    await day.queue(first)
    day.clock.advance(timedelta(seconds=1))
    second = day.send(contact="bo", phone="+4915155555555")
    await day.queue(second)
    await day.passes()  # one pass sees both, in queue order
    assert [(await day.row(c.idempotency_key))["state"] for c in (first, second)] == ["sent", "suppressed"]
    row = await day.row(second.idempotency_key)
    assert (row["rule"], row["error_reason"]) == (
        "R-S5", "1 marketing messages in the last 7 days; the contact's own limit is 1")


async def test_an_opted_out_contact_gets_no_marketing_but_the_order_confirmation(day: Shop) -> None:
    phone = "+4915187654321"
    await day.reachable(phone, opted_out_at=day.clock.now() - timedelta(days=1), opt_out_source="keyword")
    promo, order = day.send(phone=phone), day.send(phone=phone, category="utility")
    await day.queue(promo, order)
    await day.passes(3, step=timedelta(seconds=10))
    assert (await day.row(promo.idempotency_key))["rule"] == "R-S6"
    assert [(await day.row(c.idempotency_key))["state"] for c in (promo, order)] == ["suppressed", "sent"]
    assert [c["to"] for c in day.api.calls] == [phone]


async def test_free_form_text_outside_the_window_is_suppressed_and_inside_it_goes(day: Shop) -> None:
    closed = day.send(category="utility", free_text="Your parcel is on its way")
    opened = day.send(category="utility", free_text="Thanks for writing!")
    await day.reachable(opened.to, last_inbound_at=day.clock.now() - timedelta(hours=2))
    await day.reachable(closed.to, last_inbound_at=day.clock.now() - timedelta(hours=25))
    await day.queue(closed, opened)
    await day.passes()
    row = await day.row(closed.idempotency_key)
    assert (row["state"], row["rule"]) == ("suppressed", "WINDOW")
    assert row["error_reason"].startswith("free-form message outside the 24 h window: it closed at ")
    assert (await day.row(opened.idempotency_key))["state"] == "sent"


async def test_a_number_marked_invalid_after_queueing_is_suppressed_r_s7(day: Shop) -> None:
    order = day.send(category="utility")
    await day.queue(order)
    await day.execute("INSERT INTO invalid_numbers(tenant, phone, error_code, marked_at, expires_at) "
                      "VALUES (:t, :p, 131026, :now, :until)", p=order.to, now=day.clock.now(),
                      until=day.clock.now() + timedelta(days=30))
    await day.passes()
    row = await day.row(order.idempotency_key)
    assert (row["state"], row["rule"]) == ("suppressed", "R-S7")
    assert day.api.calls == []


async def test_cart_fatigue_over_the_threshold_suppresses_and_stores_the_pause(day: Shop) -> None:
    policy = GatePolicy(fatigue=Fatigue(rule="R-T6.3", threshold=0.5, pause_days=7))
    first = day.send(contact="cy", policy=policy)
    await day.queue(first)
    await day.passes()
    second = day.send(contact="cy", policy=policy)
    await day.queue(second)
    await day.passes(step=timedelta(hours=1))
    row = await day.row(second.idempotency_key)
    assert (row["state"], row["rule"]) == ("suppressed", "R-T6.3")
    async with day.engine.connect() as conn:
        pause = (await conn.execute(text("SELECT rule, until FROM fatigue_pauses WHERE tenant = :t AND "
                                         "contact_key = 'cy'"), {"t": day.name})).one()
    assert (pause.rule, pause.until) == ("R-T6.3", day.clock.now() + timedelta(days=7))
    third = day.send(contact="cy", policy=policy)  # paused: suppressed without a new score
    await day.queue(third)
    await day.passes(step=timedelta(hours=1))
    assert (await day.row(third.idempotency_key))["error_reason"].startswith("paused after fatigue until ")


async def test_withdrawn_before_the_send_command_it_is_never_queued_and_redelivery_changes_nothing(day: Shop) -> None:
    welcome = day.send()
    await day.queue(day.withdraw(welcome))
    await day.queue(welcome)
    await day.queue(day.withdraw(welcome), welcome)  # redelivered
    await day.passes(3, step=timedelta(seconds=10))
    row = await day.row(welcome.idempotency_key)
    assert (row["state"], row["rule"], row["error_reason"]) == (
        "suppressed", "WITHDRAWN", "first purchase: the welcome is pointless")
    assert [(s["status"], s["rule"]) for s in await day.statuses(welcome.idempotency_key)] == [
        ("suppressed", "WITHDRAWN")]
    assert day.api.calls == []


async def test_withdrawn_while_queued_it_is_dropped_and_once_sent_nothing_changes(night: Shop) -> None:
    waiting, same_batch, utility = night.send(), night.send(), night.send(category="utility")
    await night.queue(waiting, utility)
    await night.passes()  # the welcome waits for 08:00, the order confirmation goes
    await night.queue(night.withdraw(waiting), night.withdraw(utility, "late"), same_batch,
                      night.withdraw(same_batch))
    await night.queue(night.withdraw(waiting))  # redelivered
    row = await night.row(waiting.idempotency_key)
    assert (row["state"], row["rule"], row["suppressed_at"]) == ("suppressed", "WITHDRAWN", night.clock.now())
    assert [s["status"] for s in await night.statuses(waiting.idempotency_key)] == ["deferred", "suppressed"]
    assert (await night.row(same_batch.idempotency_key))["state"] == "suppressed"
    assert (await night.row(utility.idempotency_key))["state"] == "sent"  # already handed to the provider
    night.clock.advance(MORNING - night.clock.now())
    await night.passes()
    assert [c["to"] for c in night.api.calls] == [utility.to]


async def test_delivered_and_read_statuses_are_recorded_on_the_row(day: Shop) -> None:
    order = day.send(category="utility")
    await day.queue(order)
    await day.passes()
    wamid = (await day.row(order.idempotency_key))["wamid"]

    def status(value: str, at: datetime) -> Item[EventRecord]:
        event = MessageStatus(event_id=f"wh-{uuid.uuid4().hex}", type="message.status", occurred_at=at,
                              contact=None, data=StatusData(message_id=wamid, status=value,  # type: ignore[arg-type]
                                                            idempotency_key=order.idempotency_key))
        return Item(None, EventRecord(day.name, event, None, None))  # type: ignore[arg-type]

    delivered, read = day.clock.now() + timedelta(seconds=5), day.clock.now() + timedelta(minutes=3)
    await day.evidence([status("delivered", delivered), status("read", read), status("delivered", read)])
    row = await day.row(order.idempotency_key)
    assert (row["delivered_at"], row["read_at"]) == (delivered, read)


def _status(shop: Shop, key: str, wamid: str, value: str, at: datetime, code: int | None = None) -> Item[EventRecord]:
    event = MessageStatus(event_id=f"wh-{uuid.uuid4().hex}", type="message.status", occurred_at=at, contact=None,
                          data=StatusData(message_id=wamid, status=value, idempotency_key=key,  # type: ignore[arg-type]
                                          error_code=code))
    return Item(None, EventRecord(shop.name, event, None, None))  # type: ignore[arg-type]


async def test_withdrawn_while_being_sent_a_retry_is_suppressed_withdrawn_and_never_sent_again(day: Shop) -> None:
    welcome = day.send()

    async def withdraw_meanwhile() -> Rejected:
        await day.queue(day.withdraw(welcome))  # arrives while the message is `sending`
        return Rejected(131000, 500, "something went wrong")  # retryable: queued again

    day.api.during = withdraw_meanwhile
    await day.queue(welcome)
    await day.passes()
    assert (await day.row(welcome.idempotency_key))["state"] == "queued"
    await day.passes(3, step=timedelta(minutes=10))
    row = await day.row(welcome.idempotency_key)
    assert (row["state"], row["rule"], row["error_reason"]) == (
        "suppressed", "WITHDRAWN", "first purchase: the welcome is pointless")
    assert [(s["status"], s["rule"]) for s in await day.statuses(welcome.idempotency_key)] == [
        ("suppressed", "WITHDRAWN")]
    assert len(day.api.calls) == 1


async def test_r_s5_counts_as_far_back_as_the_longest_window_of_the_candidates(day: Shop) -> None:
    policy = GatePolicy(frequency_cap=FrequencyCap(limit=1, window_days=60))
    first = day.send(contact="dee", policy=policy)
    await day.queue(first)
    await day.passes()
    assert (await day.row(first.idempotency_key))["state"] == "sent"
    day.clock.advance(timedelta(days=45))
    second = day.send(contact="dee", policy=policy)
    await day.queue(second)
    await day.passes()
    row = await day.row(second.idempotency_key)
    assert (row["state"], row["rule"], row["error_reason"]) == (
        "suppressed", "R-S5", "1 marketing messages in the last 60 days; the limit is 1")


async def test_the_commands_stated_preferences_count_when_the_record_has_none(day: Shop) -> None:
    stated = Preferences(max_promotions_per_week=1)
    first, second = (day.send(contact="eve", preferences=stated) for _ in range(2))
    await day.queue(first)
    await day.passes()
    await day.queue(second)
    await day.passes(step=timedelta(hours=1))
    row = await day.row(second.idempotency_key)
    assert (row["state"], row["rule"], row["error_reason"]) == (
        "suppressed", "R-S5", "1 marketing messages in the last 7 days; the contact's own limit is 1")


async def test_a_contact_another_pass_gates_keeps_its_marketing_queued_for_the_next_pass(day: Shop) -> None:
    promo, other, order = day.send(contact="fay"), day.send(contact="gus"), day.send(contact="fay",
                                                                                     category="utility")
    await day.queue(promo, other, order)
    async with day.engine.begin() as conn:  # another account's pass gating fay right now
        got = (await conn.execute(text("SELECT pg_try_advisory_xact_lock(hashtextextended(:k, 0))"),
                                  {"k": f"{day.name}|gate:fay"})).scalar_one()
        assert got
        await day.passes()  # returns at once: never waits for the lock
        row = await day.row(promo.idempotency_key)
        assert (row["state"], row["rule"], row["deferred_until"]) == ("queued", None, None)
        assert await day.statuses(promo.idempotency_key) == []
        assert [(await day.row(c.idempotency_key))["state"] for c in (other, order)] == ["sent", "sent"]
    await day.passes(step=timedelta(minutes=5))
    assert (await day.row(promo.idempotency_key))["state"] == "sent"


async def test_an_unparseable_stored_command_fails_alone_and_the_rest_go(day: Shop) -> None:
    broken, fine = day.send(), day.send(category="utility")
    await day.queue(broken, fine)
    await day.execute("UPDATE messages SET command = command || '{\"policy\": {\"quiet_hours\": 7}}' "
                      "WHERE tenant = :t AND idempotency_key = :k", k=broken.idempotency_key)
    await day.passes()
    row = await day.row(broken.idempotency_key)
    assert row["state"] == "failed" and row["error_reason"].startswith("the stored command no longer parses: ")
    [status] = await day.statuses(broken.idempotency_key)
    assert (status["status"], status["flow"], status["category"]) == ("failed", "welcome", "marketing")
    assert (await day.row(fine.idempotency_key))["state"] == "sent"
    await day.passes(step=timedelta(minutes=5))  # the account is not stalled
    assert len(await day.statuses(broken.idempotency_key)) == 1


async def test_no_marketing_is_gated_while_pacing_allows_none(night: Shop) -> None:
    await night.execute("UPDATE accounts SET next_marketing_at = :later WHERE tenant = :t",
                        later=night.clock.now() + timedelta(hours=1))
    welcome = night.send()
    await night.queue(welcome)
    await night.passes()
    row = await night.row(welcome.idempotency_key)
    assert (row["state"], row["rule"], row["deferred_until"]) == ("queued", None, None)  # not gated (not deferred)
    await night.passes(step=timedelta(hours=1))
    assert (await night.row(welcome.idempotency_key))["rule"] == "R-S4"


async def test_after_metas_131049_block_one_marketing_message_at_a_time_until_one_is_delivered(day: Shop) -> None:
    phone = "+4915144444444"
    await day.reachable(phone, marketing_blocked_until=day.clock.now() - timedelta(minutes=1))
    first, second, third = (day.send(contact="hal", phone=phone) for _ in range(3))
    await day.queue(first, second)
    await day.passes()
    assert [(await day.row(c.idempotency_key))["state"] for c in (first, second)] == ["sent", "queued"]
    waiting = await day.row(second.idempotency_key)
    assert (waiting["rule"], waiting["deferred_until"]) == ("META-131049", day.clock.now() + timedelta(hours=24))
    assert waiting["error_reason"].startswith("Meta's per-user marketing limit (131049) has passed: one marketing")
    await day.queue(third)
    await day.passes(step=timedelta(minutes=1))
    assert (await day.row(third.idempotency_key))["rule"] == "META-131049"
    assert len(day.api.calls) == 1

    wamid = (await day.row(first.idempotency_key))["wamid"]
    await day.evidence([_status(day, first.idempotency_key, wamid, "delivered", day.clock.now())])
    assert (await day.row(second.idempotency_key))["next_attempt_at"] == day.clock.now()  # woken at once
    await day.passes(3, step=timedelta(minutes=5))  # R-S3 paces marketing: one a pass here
    assert [(await day.row(c.idempotency_key))["state"] for c in (second, third)] == ["sent", "sent"]
