"""The reachability handler (sender-evidence group) against the real PostgreSQL (R-S6, issue 8 item 2): a stop word suppresses
the contact's queued marketing at once — not their utility messages, not another number's, not another tenant's —
publishes a suppressed status for each and the preference event, and queues a confirmation in their language;
Meta's own stop does the same without a confirmation; replays change nothing twice. Time is a clock moved by
hand."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import FixedClock
from scrm_common.contracts.commands import GatePolicy, SendMessage, TemplateMessage
from scrm_common.contracts.envelope import EventRecord, decode_event
from scrm_common.contracts.events import (
    Contact,
    ContactData,
    ContactNumberChanged,
    ContactUpdated,
    InboundData,
    MarketingPreferenceChanged,
    MarketingPreferenceData,
    MessageInbound,
    MessageStatus,
    NumberChangedData,
    Preferences,
)
from scrm_common.db import make_engine, migrate
from scrm_common.identity import match_key
from scrm_common.kafka.consumer import Item
from sender.adapters.db import SendLog
from sender.domain.gate.opt_out import confirmation
from sender.handlers import EVIDENCE_GROUP
from sender.main import MIGRATIONS, SCHEMA
from sender.reachability import OPT_OUT_REASON, REACHABILITY_EVENTS, ReachabilityHandler

START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
ACCOUNT = "100000000000001"
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


def _phone() -> str:
    return f"+49151{random.randint(10_000_000, 99_999_999)}"


@dataclass
class World:
    tenant: str
    engine: AsyncEngine
    clock: FixedClock
    log: SendLog
    handler: ReachabilityHandler
    commits: list[int] = field(default_factory=list)

    async def queue(self, phone: str, category: str, *, tenant: str | None = None) -> str:
        """A queued message of `category` to `phone` (written as the command consumer writes it)."""
        n = next(_seq)
        tenant = tenant or self.tenant
        command = SendMessage(
            idempotency_key=f"{tenant}|flow-{category}|{n}", tenant=tenant, account_id=ACCOUNT,
            flow="cart_reminder" if category == "marketing" else "order_confirmation", category=category,
            contact_key=f"cust-{n}", to=phone, template=TemplateMessage(name="t", language="en", parameters=["x"]),
            event_id=f"ev-{n}", event_occurred_at=self.clock.now(), decided_at=self.clock.now(),
            policy=GatePolicy())  # stored as the command consumer stores it: quiet_hours.start is "08:00:00"
        async with self.engine.begin() as conn:
            new = await self.log.record(conn, [{
                "tenant": tenant, "idempotency_key": command.idempotency_key, "account_id": ACCOUNT,
                "flow": command.flow, "category": category, "contact_key": command.contact_key, "to_phone": phone,
                "command": command.model_dump_json(exclude_none=True), "state": "queued",
                "next_attempt_at": self.clock.now(), "queued_at": self.clock.now(), "event_ingested_at": None,
                "error_reason": None, "expires_at": None}])
        assert new
        return command.idempotency_key

    async def apply(self, *events: Any, tenant: str | None = None) -> None:
        await self.handler([Item(None, EventRecord(tenant or self.tenant, e, None, "corr-1"))  # type: ignore[arg-type]
                            for e in events])

    async def message(self, key: str) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT state, rule, suppressed_at, error_reason, flow, category, to_phone, command "
                "FROM messages WHERE idempotency_key = :k"), {"k": key})).first()
        assert row is not None, key
        return dict(row._mapping)

    async def record(self, phone: str, tenant: str | None = None) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(text("SELECT * FROM reachability WHERE tenant = :t AND number = :n"),
                                      {"t": tenant or self.tenant, "n": match_key(phone)})).first()
        return dict(row._mapping) if row else None

    async def published(self) -> list[EventRecord]:
        """Everything this tenant's handler put in the outbox, decoded as a consumer would."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(text("SELECT key, value, headers FROM outbox ORDER BY id"))).all()
        out = []
        for r in rows:
            headers = [(k, v.encode()) for k, v in (r.headers if isinstance(r.headers, list)
                                                    else json.loads(r.headers))]
            record = decode_event(bytes(r.key), bytes(r.value), headers)
            if record.tenant == self.tenant:
                out.append(record)
        return out


@pytest.fixture
async def world(engine: AsyncEngine) -> World:
    tenant = f"t{uuid.uuid4().hex[:10]}"
    clock = FixedClock(START)
    log = SendLog()
    async with engine.begin() as conn:
        await log.bootstrap(conn, tenant=tenant, account_id=ACCOUNT, access_token="tok", throughput=80.0,
                            created_at=START - timedelta(days=30))
    commits: list[int] = []
    handler = ReachabilityHandler(engine=engine, send_log=log, clock=clock, registry=CollectorRegistry(),
                                  on_commit=lambda: commits.append(1))
    return World(tenant, engine, clock, log, handler, commits)


def inbound(phone: str | None, text_: str, at: datetime, *, account_id: str | None = ACCOUNT,
            wa_id: str | None = None, via_whatsapp: bool = True) -> MessageInbound:
    """A customer's message: from WhatsApp's webhook (with the wamid WhatsApp gave it), or posted by a shop."""
    wamid = f"wamid.{uuid.uuid4().hex}" if via_whatsapp else None
    return MessageInbound(event_id=f"wh-{uuid.uuid4().hex}", type="message.inbound", occurred_at=at,
                          contact=Contact(phone=phone, wa_id=wa_id),
                          data=InboundData(text=text_, account_id=account_id, message_id=wamid))


def updated(phone: str, *, locale: str | None = None, timezone: str | None = None,
            preferences: Preferences | None = None) -> ContactUpdated:
    data = ContactData(preferences=preferences) if preferences is not None else ContactData()
    return ContactUpdated(event_id=f"ev-{uuid.uuid4().hex}", type="contact.updated", occurred_at=START,
                          contact=Contact(external_id=f"cust-{phone}", phone=phone, locale=locale, timezone=timezone),
                          data=data)


def meta_preference(phone: str, value: str, at: datetime) -> MarketingPreferenceChanged:
    return MarketingPreferenceChanged(
        event_id=f"wh-{uuid.uuid4().hex}", type="contact.marketing_preference_changed", occurred_at=at,
        contact=Contact(wa_id=phone.lstrip("+")),
        data=MarketingPreferenceData(value=value, source="user_preferences", account_id=ACCOUNT))  # type: ignore[arg-type]


def test_the_group_and_its_events() -> None:
    from scrm_stack.drain import GROUP_SERVICE, KNOWN_GROUPS
    # the sender's one consumer group on the events topic carries it (every group costs the broker a read of the log)
    assert GROUP_SERVICE[EVIDENCE_GROUP] == "sender" and EVIDENCE_GROUP in KNOWN_GROUPS
    assert "message.inbound" in REACHABILITY_EVENTS and "payment.succeeded" not in REACHABILITY_EVENTS
    assert "message.status" not in REACHABILITY_EVENTS  # the bulk of the log: never parsed by this group


async def test_a_stop_word_suppresses_queued_marketing_but_not_utility_and_confirms_in_german(world: World) -> None:
    phone, other = _phone(), _phone()
    await world.apply(updated(phone, locale="de"))
    promo, promo2 = await world.queue(phone, "marketing"), await world.queue(phone, "marketing")
    order = await world.queue(phone, "utility")
    others = await world.queue(other, "marketing")
    foreign = await world.queue(phone, "marketing", tenant=f"x{world.tenant}")  # same number, another tenant
    world.clock.advance(timedelta(minutes=5))
    stop = inbound(phone, " Stopp! ", START + timedelta(minutes=4))
    await world.apply(stop)

    for key in (promo, promo2):
        row = await world.message(key)
        assert (row["state"], row["rule"], row["error_reason"]) == ("suppressed", "R-S6", OPT_OUT_REASON)
        assert row["suppressed_at"] == world.clock.now()
    for key in (order, others, foreign):
        assert (await world.message(key))["state"] == "queued", key

    record = await world.record(phone)
    assert record is not None
    assert (record["opted_out_at"], record["opt_out_source"], record["last_inbound_at"]) == (
        stop.occurred_at, "keyword", stop.occurred_at)
    assert (record["locale"], record["timezone"], record["zone_derived"]) == ("de", "Europe/Berlin", True)

    published = await world.published()
    statuses = {p.event.data.idempotency_key: p.event for p in published if isinstance(p.event, MessageStatus)}
    assert set(statuses) == {promo, promo2}
    for status in statuses.values():
        assert (status.data.status, status.data.rule, status.data.error_reason) == (
            "suppressed", "R-S6", OPT_OUT_REASON)
    preferences = [p.event for p in published if isinstance(p.event, MarketingPreferenceChanged)]
    assert len(preferences) == 1
    assert (preferences[0].data.value, preferences[0].data.source, preferences[0].data.account_id) == (
        "stop", "keyword", ACCOUNT)
    assert preferences[0].occurred_at == stop.occurred_at and preferences[0].contact.phone == phone

    reply = await world.message(f"{world.tenant}|opt_out|{stop.event_id}")
    assert (reply["state"], reply["flow"], reply["category"], reply["to_phone"]) == (
        "queued", "opt_out", "service", phone)
    command = SendMessage.model_validate(reply["command"])
    assert command.text == confirmation("de", "stop") and command.template is None
    assert command.expires_at == stop.occurred_at + timedelta(hours=24)
    assert world.commits


async def test_replay_and_our_own_preference_event_change_nothing_twice(world: World) -> None:
    phone = _phone()
    promo = await world.queue(phone, "marketing")
    stop = inbound(phone, "STOP", START)
    await world.apply(stop)
    first = await world.published()
    record = await world.record(phone)
    assert (await world.message(promo))["state"] == "suppressed" and len(first) == 2

    world.clock.advance(timedelta(minutes=1))
    await world.apply(stop, stop)  # redelivered, twice in one batch
    own = [p.event for p in first if isinstance(p.event, MarketingPreferenceChanged)]
    await world.apply(*own)  # our keyword event coming back through scrm.events.v1
    assert await world.published() == first
    again = await world.record(phone)
    assert again is not None and record is not None
    assert {k: v for k, v in again.items() if k != "updated_at"} == {k: v for k, v in record.items()
                                                                     if k != "updated_at"}
    async with world.engine.connect() as conn:
        replies = (await conn.execute(text("SELECT count(*) FROM messages WHERE tenant = :t AND flow = 'opt_out'"),
                                      {"t": world.tenant})).scalar_one()
        logged = (await conn.execute(text("SELECT count(*) FROM inbound_log WHERE tenant = :t"),
                                     {"t": world.tenant})).scalar_one()
    assert (replies, logged) == (1, 1)


async def test_start_resubscribes_and_confirms_in_english_without_a_locale(world: World) -> None:
    phone = _phone()
    await world.apply(inbound(phone, "stop", START))
    start = inbound(phone, "START", START + timedelta(minutes=1))
    await world.apply(start)
    record = await world.record(phone)
    assert record is not None and record["opted_out_at"] is None
    assert record["marketing_changed_at"] == start.occurred_at
    reply = await world.message(f"{world.tenant}|opt_out|{start.event_id}")
    assert SendMessage.model_validate(reply["command"]).text == confirmation(None, "start")
    # a stop older than the resume, arriving late, changes nothing
    late = inbound(phone, "stop", START + timedelta(seconds=30))
    await world.apply(late)
    assert (await world.record(phone) or {})["opted_out_at"] is None


async def test_a_sentence_with_stop_is_a_reply_not_an_opt_out(world: World) -> None:
    phone = _phone()
    promo = await world.queue(phone, "marketing")
    await world.apply(inbound(phone, "stop sending the wrong size", START))
    assert (await world.message(promo))["state"] == "queued"
    record = await world.record(phone)
    assert record is not None and record["opted_out_at"] is None and record["last_inbound_at"] == START
    assert await world.published() == []


async def test_the_wa_id_form_of_a_number_reaches_its_messages(world: World) -> None:
    phone = f"+5255{random.randint(10_000_000, 99_999_999)}"  # Mexico: WhatsApp answers as 521…
    promo = await world.queue(phone, "marketing")
    await world.apply(inbound(None, "Baja", START, wa_id="521" + phone[3:]))
    assert (await world.message(promo))["state"] == "suppressed"
    assert (await world.record(phone) or {})["opt_out_source"] == "keyword"


async def test_meta_stop_suppresses_without_a_confirmation_and_resume_resubscribes(world: World) -> None:
    phone = _phone()
    promo = await world.queue(phone, "marketing")
    await world.apply(meta_preference(phone, "stop", START))
    assert (await world.message(promo))["state"] == "suppressed"
    record = await world.record(phone)
    assert record is not None and record["opt_out_source"] == "user_preferences"
    published = await world.published()
    assert [type(p.event) for p in published] == [MessageStatus]
    async with world.engine.connect() as conn:
        replies = (await conn.execute(text("SELECT count(*) FROM messages WHERE tenant = :t AND flow = 'opt_out'"),
                                      {"t": world.tenant})).scalar_one()
    assert replies == 0
    await world.apply(meta_preference(phone, "resume", START + timedelta(hours=1)))
    assert (await world.record(phone) or {})["opted_out_at"] is None


async def test_no_confirmation_without_an_account_of_the_tenant(world: World) -> None:
    phone, phone2 = _phone(), _phone()
    nameless = inbound(phone, "STOP", START, account_id=None)
    strange = inbound(phone2, "STOP", START, account_id="999999999999999")
    await world.apply(nameless, strange)
    assert (await world.record(phone) or {})["opted_out_at"] == START
    assert (await world.record(phone2) or {})["opted_out_at"] == START
    async with world.engine.connect() as conn:
        replies = (await conn.execute(text("SELECT count(*) FROM messages WHERE tenant = :t"),
                                      {"t": world.tenant})).scalar_one()
    assert replies == 0
    # the preference events still go out: the trigger-engine and the segmenter must learn the stop
    assert len([p for p in await world.published() if isinstance(p.event, MarketingPreferenceChanged)]) == 2


async def test_profile_zone_preferences_and_the_131049_block(world: World) -> None:
    phone = _phone()
    await world.apply(updated(phone, timezone="America/Sao_Paulo",
                              preferences=Preferences(max_promotions_per_week=1, preferred_hours="18:00-21:00")))
    record = await world.record(phone)
    assert record is not None
    assert (record["timezone"], record["zone_derived"]) == ("America/Sao_Paulo", False)
    assert record["preferences"] == {"max_promotions_per_week": 1, "preferred_hours": "18:00-21:00"}
    await world.apply(updated(phone, locale="pt_BR"))  # no preferences carried: kept
    record = await world.record(phone)
    assert record is not None and record["preferences"]["max_promotions_per_week"] == 1
    assert (record["locale"], record["timezone"]) == ("pt_BR", "America/Sao_Paulo")

    # (131049's block is recorded by the evidence consumer, which parses every status anyway:
    # tests/integration/sender/test_sender_meanings.py)


async def test_events_without_a_number_are_skipped(world: World) -> None:
    event = ContactUpdated(event_id="e-no-number", type="contact.updated", occurred_at=START,
                           contact=Contact(external_id="only-an-id", timezone="Europe/Paris"))
    await world.apply(event)
    async with world.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM reachability WHERE tenant = :t"),
                                    {"t": world.tenant})).scalar_one()
    assert count == 0 and world.commits == []


async def test_tenants_are_isolated(world: World) -> None:
    phone = _phone()
    other = f"x{world.tenant}"
    mine = await world.queue(phone, "marketing")
    await world.apply(inbound(phone, "STOP", START), tenant=other)
    assert (await world.message(mine))["state"] == "queued"
    assert await world.record(phone) is None
    assert (await world.record(phone, tenant=other) or {})["opted_out_at"] == START


async def test_a_stop_a_shop_posted_opts_out_but_opens_no_window_and_queues_no_reply(world: World) -> None:
    # WhatsApp would refuse a free-form reply (131047): only a message WhatsApp delivered opens its window.
    phone = _phone()
    promo = await world.queue(phone, "marketing")
    stop = inbound(phone, "STOP", START, via_whatsapp=False)
    await world.apply(stop)
    assert (await world.message(promo))["rule"] == "R-S6"
    record = await world.record(phone)
    assert record is not None and record["opted_out_at"] == stop.occurred_at and record["last_inbound_at"] is None
    async with world.engine.connect() as conn:
        replies = (await conn.execute(text("SELECT count(*) FROM messages WHERE tenant = :t AND flow = 'opt_out'"),
                                      {"t": world.tenant})).scalar_one()
    assert replies == 0


async def test_an_opt_out_moves_with_the_customer_to_a_new_number(world: World) -> None:
    old, new = _phone(), _phone()
    await world.apply(updated(old, locale="de"), inbound(old, "STOPP", START))
    waiting = await world.queue(new, "marketing")  # decided for the new number before the move was known
    moved = ContactNumberChanged(
        event_id=f"wh-{uuid.uuid4().hex}", type="contact.number_changed", occurred_at=START + timedelta(minutes=1),
        contact=Contact(wa_id=new.lstrip("+")),
        data=NumberChangedData(old_wa_id=old.lstrip("+"), new_wa_id=new.lstrip("+"), account_id=ACCOUNT))
    await world.apply(moved)
    record = await world.record(new)
    assert record is not None
    assert (record["opted_out_at"], record["opt_out_source"], record["locale"]) == (START, "keyword", "de")
    assert (await world.message(waiting))["rule"] == "R-S6"
    suppressed = [p.event for p in await world.published()
                  if isinstance(p.event, MessageStatus) and p.event.data.idempotency_key == waiting]
    assert [s.data.status for s in suppressed] == ["suppressed"]
