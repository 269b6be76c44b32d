"""Issue 8 item 4 through the real embedded PostgreSQL: the send gate's deferred/suppressed statuses stored on
the message row (migration 007) and counted per flow and rule in `gate_counts`, in any order, once, per tenant,
with a constant number of statements per batch however large."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.adapters.db import SCHEMA, PostgresReportStore
from reporting.bootstrap import MIGRATIONS
from reporting.domain.gate_report import build_gate_report
from reporting.domain.policy import ReportPolicy
from reporting.domain.report import build_overview
from reporting.handlers import ApplyEvents, ReportingMetrics
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, parse_event
from scrm_common.db import make_engine, migrate
from scrm_common.kafka.consumer import Item

T0 = datetime(2026, 3, 1, 21, 30, tzinfo=UTC)
H = timedelta(hours=1)
DAY0 = T0.date()
CONTACT = {"external_id": "cust-1", "phone": "+4915112345678"}


@pytest.fixture
def database_url(postgres: Any) -> str:
    return str(postgres.new_database())


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url, schema=SCHEMA, pool_size=2)
    await migrate(made, schema=SCHEMA, directory=MIGRATIONS)
    yield made
    await made.dispose()


def _status(event_id: str, status: str, at: datetime, key: str, *, flow: str = "welcome",
            wamid: str | None = None, rule: str | None = None, until: datetime | None = None) -> Event:
    data: dict[str, Any] = {"status": status, "idempotency_key": key, "flow": flow, "category": "marketing"}
    if wamid:
        data["message_id"] = wamid
    if rule:
        data["rule"] = rule
    if until:
        data["deferred_until"] = until.isoformat()
    return parse_event({"event_id": event_id, "type": "message.status", "occurred_at": at.isoformat(),
                        "contact": CONTACT, "data": data})


def _items(*events: Event, tenant: str = "shop") -> list[Item[EventRecord]]:
    return [Item(record=None, value=EventRecord(tenant, e, None, None)) for e in events]


def _handler(store: PostgresReportStore) -> ApplyEvents:
    return ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))


def _story() -> dict[str, Event]:
    """A welcome deferred to 08:00 (R-S4), then by Meta's cap (META-131049), sent next evening, delivered, read;
    a cart reminder deferred and then expired; a promotion suppressed by the cap (R-S5)."""
    morning = T0 + 10.5 * H
    return {
        "w_deferred": _status("send:w:deferred:1", "deferred", T0, "k-w", rule="R-S4", until=morning),
        "w_capped": _status("send:w:deferred:2", "deferred", morning, "k-w", rule="META-131049", until=morning + 24 * H),
        "w_sent": _status("send:w:sent", "sent", morning + 24 * H, "k-w", wamid="wamid.w"),
        "w_delivered": _status("w-d", "delivered", morning + 24 * H + H, "k-w", wamid="wamid.w"),
        "w_read": _status("w-r", "read", morning + 26 * H, "k-w", wamid="wamid.w"),
        "c_deferred": _status("send:c:deferred:1", "deferred", T0, "k-c", flow="cart", rule="R-S4", until=morning),
        "c_expired": _status("send:c:suppressed", "suppressed", morning, "k-c", flow="cart", rule="EXPIRED"),
        "p_capped": _status("send:p:suppressed", "suppressed", T0, "k-p", flow="promo", rule="R-S5"),
    }


async def _gate(store: PostgresReportStore, tenant: str = "shop") -> dict[str, Any]:
    rows = await store.gate_rows(tenant, DAY0, DAY0 + timedelta(days=3), None)
    return build_gate_report(tenant, DAY0, DAY0 + timedelta(days=3), None, rows).model_dump(mode="json", by_alias=True)


def _by_flow(report: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {f["flow"]: {"total": {k: v for k, v in f.items() if k not in ("flow", "rules") and v},
                        **{r["rule"]: {k: v for k, v in r.items() if k != "rule" and v} for r in f["rules"]}}
            for f in report["flows"]}


EXPECTED = {
    "cart": {"total": {"deferred": 1, "deferred_then_suppressed": 1, "suppressed": 1},
             "EXPIRED": {"suppressed": 1}, "R-S4": {"deferred": 1, "deferred_then_suppressed": 1}},
    "promo": {"total": {"suppressed": 1}, "R-S5": {"suppressed": 1}},
    "welcome": {"total": {"deferred": 1, "deferred_then_sent": 1}, "META-131049": {"deferred": 1, "deferred_then_sent": 1},
                "R-S4": {"deferred": 1, "deferred_then_sent": 1}},
}


async def test_the_story_counts_per_flow_and_rule_and_the_row_keeps_the_gate_outcome(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    story = _story()
    for e in story.values():
        await handle(_items(e))
    await handle(_items(*story.values()))  # redelivered: counted once
    report = await _gate(store)
    assert _by_flow(report) == EXPECTED
    assert report["totals"]["deferred"] == 2 and report["totals"]["suppressed"] == 2
    counts, revenue = await store.overview_rows("shop", DAY0, DAY0 + timedelta(days=3))
    totals = build_overview("shop", DAY0, DAY0 + timedelta(days=3), counts, revenue).totals
    assert (totals.attempted, totals.sent, totals.delivered, totals.read, totals.failed) == (1, 1, 1, 1, 0)
    async with engine.connect() as conn:
        rows = {r[0]: tuple(r[1:]) for r in await conn.execute(text(
            "SELECT idempotency_key, message_id, gate_state, gate_rule, gate_at, deferred_until, deferrals, "
            "attempted_at FROM messages"))}
    morning = T0 + 10.5 * H
    assert rows["k-w"][:5] == ("wamid.w", "deferred", "META-131049", morning, morning + 24 * H)
    assert rows["k-w"][5] == '{"META-131049": "2026-03-02T08:00:00+00:00", "R-S4": "2026-03-01T21:30:00+00:00"}'
    assert rows["k-c"] == (None, "suppressed", "EXPIRED", morning, None, '{"R-S4": "2026-03-01T21:30:00+00:00"}',
                           None)  # never attempted
    assert rows["k-p"] == (None, "suppressed", "R-S5", T0, None, None, None)
    assert len(rows) == 3


@pytest.mark.parametrize("seed", range(4))
async def test_any_arrival_order_across_batches_gives_the_same_counts(engine: AsyncEngine, seed: int) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    story = list(_story().values())
    order = list(itertools.permutations(story[:5]))[seed * 29 % 120]  # a sent before its deferrals, etc.
    rest = story[5:][::-1]
    for e in order:
        await handle(_items(e))
    await handle(_items(*rest))
    assert _by_flow(await _gate(store)) == EXPECTED
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM messages"))).scalar_one() == 3


async def test_tenants_are_kept_apart(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    same = _status("send:x:suppressed", "suppressed", T0, "k-x", rule="R-S6")
    await handle(_items(same, tenant="a") + _items(same, tenant="b")
                 + _items(_status("send:y:deferred:1", "deferred", T0, "k-y", rule="R-S4", until=T0 + 10 * H),
                          tenant="b"))
    a, b = await _gate(store, "a"), await _gate(store, "b")
    assert (a["totals"]["suppressed"], a["totals"]["deferred"]) == (1, 0)
    assert (b["totals"]["suppressed"], b["totals"]["deferred"]) == (1, 1)
    assert await store.gate_rows("c", DAY0, DAY0, None) == []
    only_welcome = await store.gate_rows("b", DAY0, DAY0, "welcome")
    assert {r[1] for r in only_welcome} == {"welcome"}
    assert await store.gate_rows("b", DAY0, DAY0, "cart") == []


async def test_a_batch_costs_the_same_statements_however_many_statuses_it_holds(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        costs = []
        for n, batch in ((5, "small"), (400, "large")):
            statements.clear()
            await handle(_items(*[
                _status(f"{batch}-{i}-{s}", s, T0 + i * timedelta(seconds=1), f"k-{batch}-{i}",
                        rule="R-S4" if s == "deferred" else "R-S5",
                        until=T0 + 10 * H if s == "deferred" else None)
                for i in range(n) for s in ("deferred", "suppressed")]))
            costs.append(len(statements))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert costs[0] == costs[1] > 0, costs
    report = await _gate(store)
    assert report["totals"]["deferred"] == 405 and report["totals"]["deferred_then_suppressed"] == 405
