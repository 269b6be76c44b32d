"""The transactional outbox against the real embedded PostgreSQL and a real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.db import make_engine, migrate
from scrm_common.db.outbox import OutboxRelay, OutboxRow, enqueue
from scrm_common.kafka import ensure_topics, make_producer
from tests.integration.common.kafka_support import eventually, read_topic

SCHEMA = "relay_it"
# The outbox table exactly as the services' migrations create it (trigger-engine, sender).
OUTBOX_DDL = """
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    key        bytea NOT NULL,
    value      bytea NOT NULL,
    headers    jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


@pytest.fixture(scope="module")
def database_url(postgres) -> str:  # type: ignore[no-untyped-def]
    return postgres.new_database()


@pytest.fixture(scope="module")
async def engine(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncEngine]:
    directory = tmp_path_factory.mktemp("outbox-migrations")
    (directory / "001_outbox.sql").write_text(OUTBOX_DDL)
    engine = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine, schema=SCHEMA, directory=Path(directory))
    yield engine
    await engine.dispose()


@pytest.fixture(scope="module")
async def producer(broker: str) -> AsyncIterator[AIOKafkaProducer]:
    producer = await make_producer(broker, client_id="it-outbox")
    yield producer
    await producer.stop()


@pytest.fixture
async def topic(broker: str, engine: AsyncEngine) -> str:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM outbox"))
    name = f"it.outbox.{uuid.uuid4().hex[:8]}"
    await ensure_topics(broker, partitions=2, replication=1, names=(name,))
    return name


def relay(engine: AsyncEngine, producer: AIOKafkaProducer, *, batch_size: int = 50) -> OutboxRelay:
    return OutboxRelay(service="it", engine=engine, producer=producer, batch_size=batch_size, poll_seconds=0.5,
                       registry=CollectorRegistry())


def rows(topic: str, prefix: str, n: int) -> list[OutboxRow]:
    return [OutboxRow(topic=topic, key=b"contact-1", value=f"{prefix}-{i}".encode(),
                      headers=[("tenant", "acme"), ("correlation_id", f"{prefix}-{i}")]) for i in range(n)]


async def outbox_size(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one())


async def outbox_empty(engine: AsyncEngine) -> bool:
    return await outbox_size(engine) == 0


async def test_committed_rows_are_published_and_deleted_rolled_back_ones_never(
        broker: str, engine: AsyncEngine, producer: AIOKafkaProducer, topic: str) -> None:
    async with engine.begin() as conn:
        await enqueue(conn, rows(topic, "committed", 5))
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await enqueue(conn, rows(topic, "rolled-back", 3))
            raise RuntimeError("the state change failed")

    outbox = relay(engine, producer)
    stop = asyncio.Event()
    task = asyncio.create_task(outbox.run(stop))
    try:
        outbox.wake()
        await eventually(lambda: outbox_empty(engine), timeout=15, what="the outbox to drain")
        # Rows written with a later state change are relayed too, woken right after the commit.
        async with engine.begin() as conn:
            await enqueue(conn, rows(topic, "later", 2))
        outbox.wake()
        await eventually(lambda: outbox_empty(engine), timeout=15, what="the later rows")
    finally:
        stop.set()
        outbox.wake()
        await asyncio.wait_for(task, timeout=15)

    published = await read_topic(broker, topic, partitions=2)
    assert [r.value for r in published] == [f"committed-{i}".encode() for i in range(5)] + [b"later-0", b"later-1"]
    assert {r.key for r in published} == {b"contact-1"}
    assert list(published[0].headers) == [("tenant", b"acme"), ("correlation_id", b"committed-0")]


async def test_rows_of_an_open_transaction_are_not_relayed_and_vanish_on_rollback(
        broker: str, engine: AsyncEngine, producer: AIOKafkaProducer, topic: str) -> None:
    outbox = relay(engine, producer)
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await enqueue(conn, rows(topic, "pending", 3))
        assert await outbox.relay_once() == 0, "uncommitted rows are invisible to the relay"
        await transaction.rollback()
    assert await outbox.relay_once() == 0
    assert await outbox_size(engine) == 0
    assert await read_topic(broker, topic, partitions=2) == []


async def test_two_relays_share_the_outbox_without_publishing_a_row_twice(
        broker: str, engine: AsyncEngine, producer: AIOKafkaProducer, topic: str) -> None:
    values = [f"row-{i}" for i in range(300)]
    async with engine.begin() as conn:
        await enqueue(conn, [OutboxRow(topic=topic, key=f"c-{i % 7}".encode(), value=v.encode(), headers=[])
                             for i, v in enumerate(values)])

    async def drain(outbox: OutboxRelay) -> int:
        moved = 0
        while n := await outbox.relay_once():
            moved += n
        return moved

    moved = await asyncio.gather(drain(relay(engine, producer, batch_size=20)),
                                 drain(relay(engine, producer, batch_size=20)))
    assert sum(moved) == len(values)
    assert await outbox_size(engine) == 0
    published = await read_topic(broker, topic, partitions=2)
    assert sorted(r.value.decode() for r in published) == sorted(values), "each row exactly once"
