"""BatchConsumer against a real broker: commit after effect, retries, poison isolation, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import InterfaceError, OperationalError

from scrm_common.backoff import Backoff
from scrm_common.contracts.envelope import PoisonMessage
from scrm_common.kafka import BatchConsumer, ensure_topics, make_producer
from scrm_common.kafka.consumer import ConsumerMetrics, Item
from tests.integration.common.kafka_support import (
    dead_letter_meta,
    dead_letters_from,
    eventually,
    group_consumer,
)

DLQ_PARTITIONS = 2
TINY = Backoff(base_seconds=0.005, max_seconds=0.02)
Handler = Callable[[Sequence[Item[bytes]]], Awaitable[None]]


@dataclass
class Kafka:
    bootstrap: str
    producer: AIOKafkaProducer

    async def new_topic(self, partitions: int) -> str:
        topic = f"it.{uuid.uuid4().hex[:10]}"
        await ensure_topics(self.bootstrap, partitions=partitions, replication=1, names=(topic,))
        return topic

    async def produce(self, topic: str, values: Sequence[bytes], *, partitions: int = 1,
                      headers: Sequence[tuple[str, bytes]] = ()) -> list[int]:
        """Send `values` round-robin over the partitions, wait for the acks, return the offsets."""
        futures = [await self.producer.send(topic, key=b"k-" + v, value=v, partition=i % partitions,
                                            headers=list(headers))
                   for i, v in enumerate(values)]
        return [meta.offset for meta in await asyncio.gather(*futures)]

    async def dead_letters(self, source_topic: str) -> list[ConsumerRecord]:
        return await dead_letters_from(self.bootstrap, source_topic, partitions=DLQ_PARTITIONS)


@dataclass
class Running:
    consumer: BatchConsumer[bytes]
    registry: CollectorRegistry
    topic: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def stop_cleanly(self) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait_for(self.task, timeout=15)

    async def kill(self) -> None:
        """What `serve` does to a loop that does not stop in time: cancel it mid-batch."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=15)

    def metric(self, name: str) -> float:
        return self.registry.get_sample_value(f"scrm_it_{name}", {"topic": self.topic}) or 0.0

    async def caught_up_after(self, moment: datetime, *, timeout: float = 15) -> None:
        await eventually(lambda: self.consumer.caught_up_at is not None and self.consumer.caught_up_at > moment,
                         timeout=timeout, what="the consumer to be caught up")


@pytest.fixture(scope="module")
async def kafka(broker: str) -> AsyncIterator[Kafka]:
    await ensure_topics(broker, partitions=DLQ_PARTITIONS, replication=1)
    producer = await make_producer(broker, client_id="it-producer")
    try:
        yield Kafka(broker, producer)
    finally:
        await producer.stop()


@pytest.fixture
async def consumers(kafka: Kafka) -> AsyncIterator[Callable[..., Running]]:
    """Starts BatchConsumers as tasks; any still running at the end of the test is cancelled."""
    started: list[Running] = []

    def start(*, topic: str, group: str, handle: Handler, decode: Callable[[ConsumerRecord], bytes] | None = None,
              max_tries: int = 2, max_records: int = 100) -> Running:
        registry = CollectorRegistry()
        consumer: BatchConsumer[bytes] = BatchConsumer(
            consumer=group_consumer(kafka.bootstrap, group_id=group, topic=topic, max_records=max_records),
            producer=kafka.producer, topic=topic, decode=decode or (lambda r: r.value), handle=handle,
            metrics=ConsumerMetrics("it", registry), max_tries=max_tries, backoff=TINY, max_records=max_records)
        running = Running(consumer, registry, topic)
        running.task = asyncio.create_task(consumer.run(running.stop), name=f"consumer-{group}")
        started.append(running)
        return running

    yield start
    for running in started:
        if running.task is not None and not running.task.done():
            await running.kill()


async def test_uncommitted_batch_is_redelivered_and_committed_ones_are_not(kafka: Kafka, consumers) -> None:
    topic, group = await kafka.new_topic(2), f"g-{uuid.uuid4().hex[:8]}"
    values = [str(i).encode() for i in range(50)]
    await kafka.produce(topic, values, partitions=2)

    # First consumer: applies two batches, then the handler rejects every try of the third (not transient).
    first_applied: list[bytes] = []
    good_batches = 0
    failing_calls = 0

    async def first_handle(items: Sequence[Item[bytes]]) -> None:
        nonlocal good_batches, failing_calls
        if good_batches >= 2:
            failing_calls += 1
            raise RuntimeError("downstream rejects this batch")
        first_applied.extend(i.value for i in items)
        good_batches += 1

    first = consumers(topic=topic, group=group, handle=first_handle, max_tries=1_000_000, max_records=10)
    await eventually(lambda: failing_calls >= 3, timeout=30, what="the third batch to be retried")
    await first.kill()  # stopped while its batch keeps failing: that batch's offsets are never committed
    assert 0 < len(first_applied) < len(values)
    assert len(set(first_applied)) == len(first_applied)

    # A new consumer in the same group gets exactly what was not committed: nothing lost, nothing repeated.
    second_applied: list[bytes] = []

    async def collect(items: Sequence[Item[bytes]]) -> None:
        second_applied.extend(i.value for i in items)

    second = consumers(topic=topic, group=group, handle=collect, max_records=10)
    expected = set(values) - set(first_applied)
    await eventually(lambda: set(second_applied) >= expected, timeout=40,
                     what="the uncommitted records to be redelivered")
    await second.caught_up_after(datetime.now(UTC))
    await second.stop_cleanly()
    assert sorted(second_applied) == sorted(expected)
    assert await kafka.dead_letters(topic) == []
    assert first.metric("dead_letters_total") == 0

    # After a clean handle everything is committed: a third consumer sees only what is produced afterwards.
    fresh = [b"fresh-0", b"fresh-1", b"fresh-2", b"fresh-3"]
    await kafka.produce(topic, fresh, partitions=2)  # after the old records in both partitions
    third_applied: list[bytes] = []

    async def collect_third(items: Sequence[Item[bytes]]) -> None:
        third_applied.extend(i.value for i in items)

    third = consumers(topic=topic, group=group, handle=collect_third)
    await eventually(lambda: set(third_applied) >= set(fresh), timeout=30, what="the fresh records")
    await third.caught_up_after(datetime.now(UTC))
    await third.stop_cleanly()
    assert sorted(third_applied) == fresh


async def test_poison_record_is_isolated_and_dead_lettered_while_good_ones_apply(kafka: Kafka, consumers) -> None:
    topic, group = await kafka.new_topic(1), f"g-{uuid.uuid4().hex[:8]}"
    values = [f"good-{i}".encode() for i in range(9)] + [b"bad"] + [f"good-{i}".encode() for i in range(9, 19)]
    offsets = await kafka.produce(topic, values, headers=[("tenant", b"acme")])
    bad_offset = offsets[values.index(b"bad")]
    good = set(values) - {b"bad"}

    calls: list[list[bytes]] = []
    applied: list[bytes] = []

    async def handle(items: Sequence[Item[bytes]]) -> None:
        batch = [i.value for i in items]
        calls.append(batch)
        if b"bad" in batch:  # like a DB transaction: all or nothing
            raise ValueError("cannot apply bad")
        applied.extend(batch)

    running = consumers(topic=topic, group=group, handle=handle, max_tries=2)
    await eventually(lambda: set(applied) >= good, timeout=30, what="every good record to be applied")
    await running.caught_up_after(datetime.now(UTC))
    await running.stop_cleanly()

    assert b"bad" not in applied
    assert sorted(applied) == sorted(good), "each good record applied exactly once"
    mixed = [c for c in calls if b"bad" in c and len(c) > 1]
    assert len(mixed) == 2, f"the whole batch is tried max_tries times before isolating: {calls}"
    assert calls.count([b"bad"]) == 2, "alone, the bad record is tried max_tries times too"

    dead = await kafka.dead_letters(topic)
    assert len(dead) == 1
    assert (dead[0].key, dead[0].value) == (b"k-bad", b"bad")
    assert ("tenant", b"acme") in list(dead[0].headers), "the original headers travel with the dead letter"
    assert dead_letter_meta(dead[0]) == {"topic": topic, "partition": 0, "offset": bad_offset,
                                         "error": "ValueError: cannot apply bad", "tries": 2}
    assert running.metric("dead_letters_total") == 1


async def test_poison_message_from_decode_is_dead_lettered_without_calling_the_handler(
        kafka: Kafka, consumers) -> None:
    topic, group = await kafka.new_topic(1), f"g-{uuid.uuid4().hex[:8]}"
    values = [b"a", b"poison", b"b", b"skip", b"c"]
    offsets = await kafka.produce(topic, values)

    def decode(record: ConsumerRecord) -> bytes | None:
        if record.value == b"poison":
            raise PoisonMessage("not a valid event: expected JSON")
        if record.value == b"skip":
            return None  # not this consumer's business
        return record.value

    calls: list[list[bytes]] = []

    async def handle(items: Sequence[Item[bytes]]) -> None:
        calls.append([i.value for i in items])

    running = consumers(topic=topic, group=group, handle=handle, decode=decode, max_tries=3)
    await eventually(lambda: {v for c in calls for v in c} >= {b"a", b"b", b"c"}, timeout=30,
                     what="the good records to be handled")
    dead = await eventually(lambda: kafka.dead_letters(topic), timeout=15, what="the poison's dead letter")
    assert [dead_letter_meta(d) for d in dead] == [
        {"topic": topic, "partition": 0, "offset": offsets[1], "error": "not a valid event: expected JSON",
         "tries": 0}]

    # A batch of nothing but poison and skipped records: the handler is not called (not even with []).
    handled_before = len(calls)
    poison_offset, _ = await kafka.produce(topic, [b"poison", b"skip"])
    await eventually(lambda: _has_offset(kafka.dead_letters(topic), poison_offset), timeout=15,
                     what="the second poison's dead letter")
    await running.caught_up_after(datetime.now(UTC))
    await running.stop_cleanly()

    assert len(calls) == handled_before
    assert all(c and b"poison" not in c and b"skip" not in c for c in calls), calls
    assert running.metric("consumer_retries_total") == 0, "a poison message is never retried"
    assert running.metric("dead_letters_total") == 2, "a skipped record is no dead letter"
    assert len(await kafka.dead_letters(topic)) == 2


async def _has_offset(dead: Awaitable[list[ConsumerRecord]], offset: int) -> bool:
    return any(dead_letter_meta(d)["offset"] == offset for d in await dead)


async def test_transient_errors_are_retried_beyond_max_tries_until_they_heal(kafka: Kafka, consumers) -> None:
    topic, group = await kafka.new_topic(1), f"g-{uuid.uuid4().hex[:8]}"
    values = [f"v-{i}".encode() for i in range(10)]
    await kafka.produce(topic, values)
    failures: list[BaseException] = [
        ConnectionResetError("connection reset by peer"),
        TimeoutError("timed out"),
        OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")),
        InterfaceError("SELECT 1", {}, Exception("connection is closed")),
    ]
    applied: list[bytes] = []
    calls = 0

    async def handle(items: Sequence[Item[bytes]]) -> None:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        applied.extend(i.value for i in items)

    running = consumers(topic=topic, group=group, handle=handle, max_tries=2)  # fewer tries than failures
    await eventually(lambda: set(applied) >= set(values), timeout=30, what="the records to be applied")
    await running.caught_up_after(datetime.now(UTC))
    await running.stop_cleanly()

    assert sorted(applied) == sorted(values)
    assert calls >= 5
    assert running.metric("consumer_retries_total") == 4
    assert running.metric("dead_letters_total") == 0
    assert await kafka.dead_letters(topic) == []


async def test_caught_up_only_once_everything_produced_before_was_applied(kafka: Kafka, consumers) -> None:
    """The sender resends an in-doubt message only after its evidence stream is caught up: this must be exact."""
    topic, group = await kafka.new_topic(3), f"g-{uuid.uuid4().hex[:8]}"
    values = [f"c-{i}".encode() for i in range(300)]
    await kafka.produce(topic, values)
    produced_at = datetime.now(UTC)
    applied: list[bytes] = []
    entered, gate = asyncio.Event(), asyncio.Event()

    async def handle(items: Sequence[Item[bytes]]) -> None:
        entered.set()
        await gate.wait()
        applied.extend(i.value for i in items)

    running = consumers(topic=topic, group=group, handle=handle, max_records=50)
    await eventually(entered.is_set, timeout=30, what="the first batch to reach the handler")
    held = running.consumer.caught_up_at
    assert held is None or held < produced_at  # a backlog is waiting behind the held batch
    gate.set()
    await running.caught_up_after(produced_at)
    assert sorted(applied) == sorted(values)
    await running.stop_cleanly()
