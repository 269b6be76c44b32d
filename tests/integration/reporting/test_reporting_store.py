"""Reporting's PostgreSQL store against the real embedded PostgreSQL: migration 002's backfill agrees with
`match_key`, and the issue 5 behaviour (platform-only counts, replies by WhatsApp identity, exact money) holds
through the real SQL."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.adapters.db import SCHEMA, PostgresReportStore
from reporting.bootstrap import MIGRATIONS
from reporting.domain.policy import ReportPolicy
from reporting.domain.report import build_overview
from reporting.handlers import ApplyEvents, ReportingMetrics
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, parse_event
from scrm_common.db import make_engine, migrate
from scrm_common.identity import match_key
from scrm_common.kafka.consumer import Item

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
MX_PHONE, MX_WA = "+525512345678", "5215512345678"


@pytest.fixture
def database_url(postgres: Any) -> str:
    """A fresh database per test (created synchronously, outside the test's event loop)."""
    return str(postgres.new_database())


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url, schema=SCHEMA, pool_size=2)
    yield made
    await made.dispose()


def _event(type_: str, at: datetime, contact: dict[str, Any] | None, event_id: str, **data: Any) -> Event:
    raw: dict[str, Any] = {"event_id": event_id, "type": type_, "occurred_at": at.isoformat(), "data": data}
    if contact is not None:
        raw["contact"] = contact
    return parse_event(raw)


def _items(*events: Event) -> list[Item[EventRecord]]:
    return [Item(record=None, value=EventRecord("shop", e, None, None)) for e in events]


@pytest.mark.parametrize("phone", ["+5215512345678", "+525512345678", "+551187654321", "+5511987654321",
                                   "+5491123456789", "+541123456789", "+4915112345678", "+14155550100"])
async def test_the_backfill_of_existing_rows_agrees_with_match_key(engine: AsyncEngine, tmp_path: Path,
                                                                    phone: str) -> None:
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(MIGRATIONS / "001_init.sql", first / "001_init.sql")
    assert await migrate(engine, schema=SCHEMA, directory=first) == ["001_init.sql"]
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO messages (tenant, message_key, phone, sent_at, effective_sent_at) "
                                "VALUES ('shop', 'wamid.old', :phone, :at, :at)"), {"phone": phone, "at": T0})
        await conn.execute(text("INSERT INTO inbound_messages (tenant, event_id, phone, received_at) "
                                "VALUES ('shop', 'in-old', :phone, :at)"), {"phone": phone, "at": T0})
    assert await migrate(engine, schema=SCHEMA, directory=MIGRATIONS) == \
        sorted(p.name for p in MIGRATIONS.glob("*.sql"))[1:]
    async with engine.connect() as conn:
        message = (await conn.execute(text("SELECT recipient, platform FROM messages"))).one()
        received = (await conn.execute(text("SELECT recipient FROM inbound_messages"))).scalar_one()
    assert tuple(message) == (match_key(phone), True)  # counted before, so still the platform's
    assert received == match_key(phone)


async def test_issue_5_through_the_real_store(engine: AsyncEngine) -> None:
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    store = PostgresReportStore(engine)
    registry = CollectorRegistry()
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(registry))
    shop = {"external_id": "cust-mx", "phone": MX_PHONE, "wa_id": MX_WA}
    await handle(_items(
        _event("message.status", T0, shop, "s1", message_id="wamid.oc", status="sent", idempotency_key="k-oc",
               flow="order_confirmation"),
        _event("payment.succeeded", T0, {"external_id": "cust-mx"}, "p1", order_id="K1", amount=12.345,
               currency="KWD"),
        _event("payment.succeeded", T0, {"external_id": "cust-mx"}, "p2", order_id="J1", amount=12800.0,
               currency="JPY"),
    ))
    await handle(_items(
        _event("message.status", T0 + H, None, "w1", message_id="wamid.oc", status="delivered"),
        _event("message.status", T0 + 2 * H, {"wa_id": MX_WA}, "w2", message_id="wamid.oc", status="read"),
        _event("message.status", T0 + H, {"wa_id": "4915112345678", "phone": "+4915112345678"}, "w3",
               message_id="wamid.agent", status="read"),
        _event("message.inbound", T0 + 3 * H, {"wa_id": MX_WA, "profile_name": "Lucky"}, "i1", type="image",
               text="Ist der Sneaker noch in 42 da?"),
    ))
    counts, revenue = await store.overview_rows("shop", T0.date(), T0.date())
    overview = build_overview("shop", T0.date(), T0.date(), counts, revenue).model_dump(mode="json")
    flow = next(f for f in overview["flows"] if f["flow"] == "order_confirmation")
    assert (flow["sent"], flow["delivered"], flow["read"], flow["replied"]) == (1, 1, 1, 1)
    assert overview["totals"]["read"] == 1  # the agent app's message is not ours
    assert overview["totals"]["revenue"] == {"JPY": "12800", "KWD": "12.345"}
    async with engine.connect() as conn:
        rows = {r[0]: tuple(r[1:]) for r in await conn.execute(text(
            "SELECT message_key, platform, recipient, wa_id FROM messages"))}
    assert rows == {"wamid.oc": (True, "525512345678", MX_WA),
                    "wamid.agent": (False, "4915112345678", "4915112345678")}


async def _played(engine: AsyncEngine, story: dict[str, Event], order: tuple[str, ...]) -> PostgresReportStore:
    """A migrated store after each event of `story` was consumed in a batch of its own, in `order`."""
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    store = PostgresReportStore(engine)
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
    for name in order:
        await handle(_items(story[name]))
    return store


# --- R-S7's late retry: one message per idempotency key -----------------------------------------------

_KEY = "shop:order_confirmation:o-1"
_D = timedelta(days=1)


def _late_retry_story() -> dict[str, Event]:
    """First attempt sent then failed (131026); the retry 24 h later: same key, new wamid, delivered, read."""
    shop = {"external_id": "cust-1", "phone": "+4915112345678", "wa_id": "4915112345678"}
    meta = {"wa_id": "4915112345678"}
    common = {"idempotency_key": _KEY}
    sender = {**common, "flow": "order_confirmation", "account_id": "acc-1", "category": "utility"}
    return {
        "first_sent": _event("message.status", T0, shop, "send:d:sent", message_id="wamid.1", status="sent",
                             **sender),
        "first_failed": _event("message.status", T0 + H, meta, "w-f1", message_id="wamid.1", status="failed",
                               error_code=131026, **common),
        "late_sent": _event("message.status", T0 + H + _D, shop, "send:d:sent:late", message_id="wamid.2",
                            status="sent", **sender),
        "late_delivered": _event("message.status", T0 + 2 * H + _D, meta, "w-d2", message_id="wamid.2",
                                 status="delivered", **common),
        "late_read": _event("message.status", T0 + 3 * H + _D, meta, "w-r2", message_id="wamid.2", status="read",
                            **common),
        "reply": _event("message.inbound", T0 + 4 * H + _D, meta, "i-1", type="text", text="Danke!"),
    }


@pytest.mark.parametrize("order", [
    ("first_sent", "first_failed", "late_sent", "late_delivered", "late_read", "reply"),
    ("reply", "late_read", "late_delivered", "late_sent", "first_failed", "first_sent"),
    ("late_read", "first_failed", "reply", "late_sent", "first_sent", "late_delivered"),
    ("first_failed", "late_delivered", "first_sent", "reply", "late_read", "late_sent"),
], ids=["in-order", "reversed", "mixed-1", "mixed-2"])
async def test_a_late_retry_is_one_delivered_read_replied_message_through_the_real_store(
        engine: AsyncEngine, order: tuple[str, ...]) -> None:
    store = await _played(engine, _late_retry_story(), order)
    start, end = T0.date(), (T0 + _D).date()
    overview = build_overview("shop", start, end, *await store.overview_rows("shop", start, end)).model_dump(
        mode="json", by_alias=True)
    totals = {k: overview["totals"][k] for k in ("attempted", "sent", "delivered", "read", "replied", "failed")}
    assert totals == {"attempted": 1, "sent": 1, "delivered": 1, "read": 1, "replied": 1, "failed": 0}
    assert [(d["day"], d["sent"], d["delivered"], d["failed"]) for d in overview["days"]] == \
        [(str(start), 1, 0, 0), (str(end), 0, 1, 0)]
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT message_id, attempt_id, idempotency_key, failed_at, effective_sent_at FROM messages"))).all()
    assert [tuple(r) for r in rows] == [("wamid.1", "wamid.2", _KEY, None, T0 + H + _D)]


async def test_two_rows_of_one_key_from_before_migration_003_become_one_message(engine: AsyncEngine,
                                                                                 tmp_path: Path) -> None:
    """An earlier version counted the late retry as a second message; 003 keeps the key on the latest
    attempt's row, and the next status of the other wamid combines the two with the counts corrected."""
    first = tmp_path / "first"
    first.mkdir()
    for name in ("001_init.sql", "002_platform_messages_and_recipients.sql"):
        shutil.copy(MIGRATIONS / name, first / name)
    await migrate(engine, schema=SCHEMA, directory=first)
    async with engine.begin() as conn:
        for key, sent, failed in (("wamid.1", T0, T0 + H), ("wamid.2", T0 + _D, None)):
            await conn.execute(text(
                "INSERT INTO messages (tenant, message_key, message_id, idempotency_key, flow, platform, sent_at, "
                "failed_at, effective_sent_at, recipient) VALUES ('shop', :k, :k, :key, 'oc', true, :s, :f, :s, "
                "'4915112345678')"), {"k": key, "key": _KEY, "s": sent, "f": failed})
        await conn.execute(text(
            "INSERT INTO daily_counts VALUES ('shop', :d0, 'oc', 'attempted', 1), ('shop', :d0, 'oc', 'sent', 1), "
            "('shop', :d0, 'oc', 'failed', 1), ('shop', :d1, 'oc', 'attempted', 1), ('shop', :d1, 'oc', 'sent', 1)"),
            {"d0": T0.date(), "d1": (T0 + _D).date()})
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    async with engine.connect() as conn:
        keys = dict((await conn.execute(text("SELECT message_key, idempotency_key FROM messages"))).all())
    assert keys == {"wamid.1": None, "wamid.2": _KEY}
    store = PostgresReportStore(engine)
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
    await handle(_items(_event("message.status", T0 + H, {"wa_id": "4915112345678"}, "w-again",
                               message_id="wamid.1", status="failed", idempotency_key=_KEY)))
    counts, _ = await store.overview_rows("shop", T0.date(), (T0 + _D).date())
    assert sorted((str(day), metric, n) for day, _, metric, n in counts) == [
        (str(T0.date()), "attempted", 1), (str(T0.date()), "sent", 1)]
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one() == 1


# --- a reply naming the message it answers --------------------------------------------------------------

def _reply_story() -> dict[str, Event]:
    shop = {"external_id": "cust-1", "phone": "+4915112345678", "wa_id": "4915112345678"}
    meta = {"wa_id": "4915112345678"}
    return {
        "welcome": _event("message.status", T0, shop, "s-w", message_id="wamid.w", status="sent",
                          idempotency_key="k-w", flow="welcome"),
        "cart": _event("message.status", T0 + 2 * _D, shop, "s-c", message_id="wamid.c", status="sent",
                       idempotency_key="k-c", flow="cart"),
        # two days after the welcome, the customer reacts to it: its reply, not the cart reminder's
        "reaction": _event("message.inbound", T0 + 2 * _D + H, meta, "i-r", type="reaction", text="❤️",
                           context_message_id="wamid.w"),
        # and writes without quoting anything: the latest message's reply
        "plain": _event("message.inbound", T0 + 2 * _D + 2 * H, meta, "i-p", type="text", text="Noch da?"),
        # quotes a wamid reporting never saw: the latest-message rule as well
        "unknown": _event("message.inbound", T0 + 2 * _D + 3 * H, meta, "i-u", type="text", text="?",
                          context_message_id="wamid.never-seen"),
    }


@pytest.mark.parametrize("order", [
    ("welcome", "cart", "reaction", "plain", "unknown"),
    ("unknown", "plain", "reaction", "cart", "welcome"),
    ("reaction", "cart", "unknown", "welcome", "plain"),
    ("plain", "welcome", "reaction", "unknown", "cart"),
], ids=["in-order", "reversed", "mixed-1", "mixed-2"])
async def test_a_reply_naming_its_message_credits_it_through_the_real_store(engine: AsyncEngine,
                                                                         order: tuple[str, ...]) -> None:
    store = await _played(engine, _reply_story(), order)
    async with engine.connect() as conn:
        replied = dict((await conn.execute(text("SELECT message_key, replied_at FROM messages"))).all())
        contexts = dict((await conn.execute(text("SELECT event_id, context_message_id FROM inbound_messages"))).all())
    assert replied == {"wamid.w": T0 + 2 * _D + H, "wamid.c": T0 + 2 * _D + 2 * H}
    assert contexts == {"i-r": "wamid.w", "i-p": None, "i-u": "wamid.never-seen"}
    counts, _ = await store.overview_rows("shop", T0.date(), (T0 + 2 * _D).date())
    assert sorted((flow, n) for _, flow, metric, n in counts if metric == "replied") == [("cart", 1), ("welcome", 1)]
