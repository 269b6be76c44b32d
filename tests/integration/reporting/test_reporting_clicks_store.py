"""R-R1's "clicked" through the real PostgreSQL (migration 008) and the real broker: a message counts once however
many clicks it gets, on its first click's day; a redelivered click changes nothing; two instances counting the
same message at once count it once; clicks naming no message (older events) still count per event."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.adapters.db import SCHEMA, PostgresReportStore
from reporting.bootstrap import MIGRATIONS
from reporting.domain.policy import ReportPolicy
from reporting.domain.reads import EVENTS_READ
from reporting.domain.report import build_overview
from reporting.handlers import ApplyEvents, ReportingMetrics
from scrm_common.backoff import Backoff
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord, decoder_for, encode_event
from scrm_common.contracts.events import Event, parse_event
from scrm_common.db import make_engine, migrate
from scrm_common.kafka import BatchConsumer, ensure_topics, make_producer
from scrm_common.kafka.consumer import ConsumerMetrics, Item
from tests.integration.common.kafka_support import eventually, group_consumer, start_broker

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
DAY0 = T0.date()
CONTACT = {"external_id": "cust-1", "phone": "+4915112345678"}
CART_URL = "https://shop.example/cart?utm_source=whatsapp&utm_campaign=abandoned_cart&utm_content=stage-1"


@pytest.fixture
def database_url(postgres: Any) -> str:
    return str(postgres.new_database())


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(made, schema=SCHEMA, directory=MIGRATIONS)
    yield made
    await made.dispose()


def _click(event_id: str, key: str | None, at: datetime = T0, *, link: str = "l1", flow: str | None = None) -> Event:
    data: dict[str, Any] = {"link_id": link, "url": CART_URL}
    if key is not None:
        data |= {"idempotency_key": key, "campaign": "abandoned_cart", "content": "stage-1", "kind": "tracked"}
    if flow is not None:
        data["flow"] = flow
    return parse_event({"event_id": event_id, "type": "link.clicked", "occurred_at": at.isoformat(),
                        "contact": CONTACT, "data": data})


def _status(event_id: str, status: str, wamid: str, key: str, at: datetime = T0) -> Event:
    return parse_event({"event_id": event_id, "type": "message.status", "occurred_at": at.isoformat(),
                        "contact": CONTACT, "data": {"status": status, "message_id": wamid, "idempotency_key": key,
                                                     "flow": "abandoned_cart", "category": "marketing"}})


def _items(*events: Event, tenant: str = "shop") -> list[Item[EventRecord]]:
    return [Item(record=None, value=EventRecord(tenant, e, None, None)) for e in events]


def _handler(store: PostgresReportStore, registry: CollectorRegistry | None = None) -> ApplyEvents:
    return ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(registry or CollectorRegistry()))


async def _clicked(store: PostgresReportStore, tenant: str = "shop", days: int = 3
                   ) -> dict[tuple[date, str | None], int]:
    counts, _ = await store.overview_rows(tenant, DAY0, DAY0 + timedelta(days=days))
    return {(day, flow): n for day, flow, metric, n in counts if metric == "clicked"}


async def _rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in await conn.execute(text(
            "SELECT tenant, idempotency_key, clicked_at, flow FROM clicked_messages ORDER BY 1, 2"))]


# --- the real PostgreSQL -------------------------------------------------------------------------------

async def test_three_clicks_of_one_message_count_once(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    await handle(_items(_click("c-1", "k-a", T0, link="l1"), _click("c-2", "k-a", T0 + H, link="l2")))
    await handle(_items(_click("c-3", "k-a", T0 + 2 * H, link="l1")))
    assert await _clicked(store) == {(DAY0, "abandoned_cart"): 1}
    assert await _rows(engine) == [("shop", "k-a", T0, "abandoned_cart")]


async def test_clicks_of_two_messages_count_two(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    await handle(_items(_click("c-1", "k-a"), _click("c-2", "k-b", T0 + H), _click("c-3", "k-a", T0 + 2 * H)))
    await handle(_items(_click("c-4", "k-b", T0 + 3 * H)))
    assert await _clicked(store) == {(DAY0, "abandoned_cart"): 2}


async def test_a_redelivered_click_changes_nothing(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    registry = CollectorRegistry()
    handle = _handler(store, registry)
    click, old = _click("c-1", "k-a"), _click("c-old", None)  # one of a message, one naming none
    await handle(_items(click, old))
    before = await _clicked(store)
    await handle(_items(click, old))
    await handle(_items(old, click, click))
    assert await _clicked(store) == before == {(DAY0, "abandoned_cart"): 2}
    assert registry.get_sample_value("scrm_reporting_counted_total", {"metric": "clicked"}) == 2
    assert registry.get_sample_value("scrm_reporting_events_duplicate_total") == 5


async def test_the_new_users_overview_has_a_click_rate_of_at_most_one(engine: AsyncEngine) -> None:
    """'sent 2, clicked 4, click rate 2.0', and three more clicks of one link raised clicked from 5 to 8."""
    store = PostgresReportStore(engine)
    handle = _handler(store)
    await handle(_items(*[_status(f"s-{w}-{s}", s, w, f"k-{w}", T0 + i * H)
                          for w in ("wamid.1", "wamid.2") for i, s in enumerate(("sent", "delivered"))]))
    await handle(_items(*[_click(f"c-{i}", "k-wamid.1", T0 + (2 + i) * H, link=f"l{i % 2}") for i in range(3)],
                        _click("c-b", "k-wamid.2", T0 + 3 * H)))
    await handle(_items(*[_click(f"c-more-{i}", "k-wamid.1", T0 + (6 + i) * H, link="l0") for i in range(3)]))
    overview = build_overview("shop", DAY0, DAY0, *await store.overview_rows("shop", DAY0, DAY0))
    flow = next(f for f in overview.flows if f.flow == "abandoned_cart")
    assert (flow.sent, flow.delivered, flow.clicked, flow.rates.click_rate) == (2, 2, 2, 1.0)


async def test_an_earlier_click_arriving_late_moves_the_message_to_its_day(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    await handle(_items(_click("c-late", "k-a", T0 + 2 * D)))
    await handle(_items(_click("c-first", "k-a", T0, flow="abandoned_cart"), _click("c-mid", "k-a", T0 + D)))
    assert await _clicked(store) == {(DAY0, "abandoned_cart"): 1}
    assert await _rows(engine) == [("shop", "k-a", T0, "abandoned_cart")]


async def test_one_key_in_two_tenants_is_two_messages(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    await _handler(store)(_items(_click("c-1", "k-a"), tenant="a") + _items(_click("c-1", "k-a"), tenant="b"))
    assert await _clicked(store, "a") == await _clicked(store, "b") == {(DAY0, "abandoned_cart"): 1}


async def test_two_instances_clicking_one_message_at_once_count_it_once(engine: AsyncEngine,
                                                                       database_url: str) -> None:
    """Each instance's transaction inserts the message's first click; the second waits for the first and then
    finds it there (ON CONFLICT DO NOTHING): counted only by the one that inserted it."""
    other = make_engine(database_url, schema=SCHEMA, pool_size=4)
    try:
        stores = [PostgresReportStore(engine), PostgresReportStore(other)]
        for round_ in range(5):
            key = f"k-{round_}"
            await asyncio.gather(*[
                _handler(store)(_items(*[_click(f"c-{round_}-{n}-{i}", key, T0 + i * H, link=f"l{i}")
                                         for i in range(3)], _click(f"c-{round_}-{n}-x", f"{key}-{n}")))
                for n, store in enumerate(stores)])
        assert await _clicked(stores[0]) == {(DAY0, "abandoned_cart"): 5 + 10}
    finally:
        await other.dispose()


async def test_a_batch_of_clicks_costs_the_same_statements_however_many_it_holds(engine: AsyncEngine) -> None:
    store = PostgresReportStore(engine)
    handle = _handler(store)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        costs = []
        for n, batch in ((3, "small"), (300, "large")):
            await handle(_items(*[_click(f"{batch}-first-{i}", f"k-{batch}-{i}", T0 + 2 * D) for i in range(n)]))
            statements.clear()  # now: earlier clicks of clicked messages and new messages at once
            await handle(_items(*[_click(f"{batch}-{i}-{j}", f"k-{batch}-{i + j * n}", T0 + j * D)
                                  for i in range(n) for j in range(3)]))
            costs.append(len(statements))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert costs[0] == costs[1] > 0, costs
    assert sum((await _clicked(store)).values()) == 3 * 3 + 300 * 3


# --- through the real broker --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield stack.kafka_bootstrap
    finally:
        stack.stop_all()


async def test_clicks_consumed_from_the_broker_count_each_message_once(broker: str, engine: AsyncEngine) -> None:
    """Reporting's own consume loop over the event log: three clicks of one message and one of another, each
    click of the first published twice (a producer retry) and the whole lot once more (a redelivery)."""
    await ensure_topics(broker, partitions=2, replication=1)
    producer = await make_producer(broker, client_id="it-reporting-clicks")
    registry = CollectorRegistry()
    metrics = ReportingMetrics(registry)
    store = PostgresReportStore(engine)
    loop = BatchConsumer(consumer=group_consumer(broker, group_id="reporting-clicks", topic=topics.EVENTS,
                                                 max_records=50),
                         producer=producer, topic=topics.EVENTS, decode=decoder_for(EVENTS_READ),
                         handle=ApplyEvents(store=store, policy=ReportPolicy(), metrics=metrics),
                         metrics=ConsumerMetrics("reporting", registry), max_tries=2,
                         backoff=Backoff(base_seconds=0.01, max_seconds=0.05), max_records=50)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    clicks = [_click(f"b-{i}", "k-broker-a", T0 + i * H, link=f"l{i}") for i in range(3)] + \
        [_click("b-x", "k-broker-b", T0 + H)]

    async def publish(events: list[Event]) -> None:
        for e in events:
            key, value, headers = encode_event("shop", e, ingested_at=None)
            await producer.send_and_wait(topics.EVENTS, key=key, value=value, headers=headers)

    def seen() -> float:
        applied = registry.get_sample_value("scrm_reporting_events_applied_total", {"type": "link.clicked"}) or 0
        return applied + (registry.get_sample_value("scrm_reporting_events_duplicate_total") or 0)

    try:
        await publish(clicks + clicks[:3])
        await eventually(lambda: seen() >= 7, timeout=60, what="every click consumed")
        assert await _clicked(store) == {(DAY0, "abandoned_cart"): 2}
        await publish(clicks)  # redelivered
        await eventually(lambda: seen() >= 11, timeout=60, what="the redelivered clicks consumed")
        assert await _clicked(store) == {(DAY0, "abandoned_cart"): 2}
        assert registry.get_sample_value("scrm_reporting_counted_total", {"metric": "clicked"}) == 2
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=15)
        await producer.stop()
