"""A message the engine decided that then failed is a line of its person's decision story (real PostgreSQL, the
real route, and once through a real Tansu broker): with the failure's reason and code, once per status, never
for a key the engine did not decide for that tenant, never for sent, delivered or read."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.backoff import Backoff
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import encode_event
from scrm_common.contracts.events import parse_event
from scrm_common.db import make_engine, migrate
from scrm_common.http import service_app
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, ensure_topics, make_producer
from scrm_common.kafka.consumer import Item
from tests.integration.common.kafka_support import eventually, group_consumer, start_broker
from tests.integration.trigger_engine.test_dead_letter_story import Keys, create
from tests.unit.trigger_engine.factories import PHONE, T0, payment
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.http import build_router
from trigger_engine.domain.outcomes import OUTCOMES_GROUP
from trigger_engine.main import MIGRATIONS, SCHEMA
from trigger_engine.outcomes import OutcomeMetrics, TellFailures, decode_failure

PAUSED = "template order_confirmation (de) is paused"
_offsets = iter(range(1, 1_000_000))


@pytest.fixture(scope="module")
def database_url(postgres: Any) -> str:
    return str(postgres.new_database())


@pytest.fixture(scope="module")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine=made, schema=SCHEMA, directory=MIGRATIONS)
    yield made
    await made.dispose()


@pytest.fixture
def tenant() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@dataclass
class Record:
    """What the consume loop hands the decoder: a record of `scrm.events.v1`."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    offset: int = field(default_factory=lambda: next(_offsets))


def status(tenant: str, kind: str, key: str | None, *, event_id: str | None = None, code: int | None = None,
           reason: str | None = None) -> Record:
    """A `message.status` as the sender or ingest publishes it (the contact: the number sent to)."""
    data = {"status": kind, "message_id": f"wamid.{uuid.uuid4().hex}", "idempotency_key": key, "error_code": code,
            "error_reason": reason}
    event = parse_event({"event_id": event_id or f"st-{uuid.uuid4().hex[:12]}", "type": "message.status",
                         "occurred_at": T0.isoformat(), "contact": {"phone": PHONE},
                         "data": {k: v for k, v in data.items() if v is not None}})
    return Record(*encode_event(tenant, event, ingested_at=T0))


async def tell(engine: AsyncEngine, *records: Record) -> dict[str, float]:
    """Hand the records to the outcome handler as its consumer would; return its counts by result."""
    registry = CollectorRegistry()
    items = [Item(r, told) for r in records if (told := decode_failure(r)) is not None]  # type: ignore[arg-type]
    if items:
        await TellFailures(engine=engine, repository=EngineRepository(), metrics=OutcomeMetrics(registry))(items)
    return counts(registry)


def counts(registry: CollectorRegistry) -> dict[str, float]:
    return {result: registry.get_sample_value("scrm_trigger_engine_story_failures_total", {"result": result}) or 0.0
            for result in ("told", "again", "not_decided_here")}


async def story(engine: AsyncEngine, tenant: str, contact: str) -> list[dict[str, Any]]:
    """The contact's whole decision story through the real route, newest first."""
    app = service_app("trigger-engine under test", "0")
    app.include_router(build_router(engine=engine, repository=EngineRepository(), keys=Keys()))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://te") as http:
        resp = await http.get(f"/v1/contacts/{contact}/decisions", headers={"Authorization": f"Bearer {tenant}"})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["decisions"])


def failed(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in lines if d["outcome"] == "failed"]


async def decided(engine: AsyncEngine, tenant: str, contact: str, order: str) -> str:
    """Decide the order's confirmation for `contact`; return the Send's idempotency key."""
    await create(engine, tenant, payment(order_id=order, external_id=contact, phone=PHONE))
    [send] = [d for d in await story(engine, tenant, contact) if d["outcome"] == "send"]
    return str(send["idempotency_key"])


async def test_a_failed_message_is_told_in_the_story_of_the_person_it_was_decided_for(engine, tenant) -> None:
    key = await decided(engine, tenant, "cust-1", "ord-1")
    assert await tell(engine, status(tenant, "failed", key, event_id="st-1", reason=PAUSED)) == {
        "told": 1, "again": 0, "not_decided_here": 0}

    lines = await story(engine, tenant, "cust-1")
    assert [d["outcome"] for d in lines] == ["failed", "send"], "newest first"
    line = lines[0]
    assert (line["event_id"], line["event_type"], line["flow"], line["reason"], line["idempotency_key"]) == (
        "st-1", "message.status", "order_confirmation", PAUSED, key)
    assert line["decided_at"].startswith(T0.isoformat()[:19])
    assert await story(engine, tenant, PHONE) == lines, "the same person by another of their identities"


async def test_the_error_code_is_told_with_the_reason(engine, tenant) -> None:
    key = await decided(engine, tenant, "cust-2", "ord-2")
    await tell(engine, status(tenant, "failed", key, code=131026, reason="Message undeliverable"))
    assert [d["reason"] for d in failed(await story(engine, tenant, "cust-2"))] == [
        "Message undeliverable (error 131026)"]


async def test_the_same_status_twice_is_one_line_and_another_failure_of_the_message_another(engine, tenant) -> None:
    key = await decided(engine, tenant, "cust-3", "ord-3")
    again = status(tenant, "failed", key, event_id="st-3", reason=PAUSED)
    assert await tell(engine, again, again) == {"told": 1, "again": 1, "not_decided_here": 0}
    assert await tell(engine, again) == {"told": 0, "again": 1, "not_decided_here": 0}
    # Meta's own failure of the same message (its webhook: another event) is another line.
    assert (await tell(engine, status(tenant, "failed", key, event_id="wa:wamid.3:failed", code=131049,
                                      reason="Meta chose not to deliver")))["told"] == 1
    assert [d["event_id"] for d in failed(await story(engine, tenant, "cust-3"))] == ["wa:wamid.3:failed", "st-3"]


async def test_a_key_not_decided_here_or_decided_for_another_tenant_changes_nothing(engine, tenant) -> None:
    key = await decided(engine, tenant, "cust-4", "ord-4")
    other = f"t{uuid.uuid4().hex[:10]}"
    await create(engine, other, payment(order_id="ord-4", external_id="cust-4", phone=PHONE))
    before = {t: await story(engine, t, "cust-4") for t in (tenant, other)}

    records = [
        status(other, "failed", key, reason=PAUSED),  # our key, published for another tenant
        status(tenant, "failed", f"{key}:unknown", reason=PAUSED),  # a key nobody decided
        status(tenant, "failed", None, reason="a message the platform did not send"),  # no key at all
        *(status(tenant, kind, key) for kind in ("sent", "delivered", "read")),
    ]
    assert await tell(engine, *records) == {"told": 0, "again": 0, "not_decided_here": 2}
    assert {t: await story(engine, t, "cust-4") for t in (tenant, other)} == before


# Through a real broker: the loop as main.py builds it, in a group of its own.

@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield stack.kafka_bootstrap
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
async def producer(broker: str) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(broker, partitions=3, replication=1)
    started = await make_producer(broker, client_id="it-trigger-engine-outcomes")
    yield started
    await started.stop()


async def test_through_the_broker_only_the_failed_status_is_told_and_once(engine, tenant, broker: str,
                                                                         producer: AIOKafkaProducer) -> None:
    key = await decided(engine, tenant, "cust-6", "ord-6")
    published = [status(tenant, kind, key) for kind in ("sent", "delivered", "read")]
    paused = status(tenant, "failed", key, event_id="st-6", reason=PAUSED)
    published += [paused, paused, status(tenant, "failed", "not-ours", reason=PAUSED)]
    for r in published:
        await producer.send_and_wait(topics.EVENTS, key=r.key, value=r.value, headers=r.headers)

    registry = CollectorRegistry()
    loop = BatchConsumer(
        consumer=group_consumer(broker, group_id=f"{OUTCOMES_GROUP}-{uuid.uuid4().hex[:8]}", topic=topics.EVENTS,
                                max_records=100),
        producer=producer, topic=topics.EVENTS, decode=decode_failure,
        handle=TellFailures(engine=engine, repository=EngineRepository(), metrics=OutcomeMetrics(registry)),
        metrics=ConsumerMetrics(OUTCOMES_GROUP, registry), max_tries=2, backoff=Backoff(0.01, 0.05),
        max_records=100, service=OUTCOMES_GROUP)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await eventually(lambda: loop.caught_up_at is not None, timeout=30, what="the loop to join and catch up")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)

    assert counts(registry) == {"told": 1, "again": 1, "not_decided_here": 1}
    assert registry.get_sample_value("scrm_trigger_engine_outcomes_consumed_records_total",
                                     {"topic": topics.EVENTS}) == len(published)
    assert [(d["event_id"], d["reason"]) for d in failed(await story(engine, tenant, "cust-6"))] == [("st-6", PAUSED)]
