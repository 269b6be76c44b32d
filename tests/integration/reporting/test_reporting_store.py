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
