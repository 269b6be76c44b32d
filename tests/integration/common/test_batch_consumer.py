"""BatchConsumer against a real broker: commit after effect, failures by class, poison isolation, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from scrm_common.backoff import Backoff
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import PoisonMessage
from scrm_common.kafka import BatchConsumer, ensure_topics, make_producer
from scrm_common.kafka.consumer import ConsumerMetrics, Item, classify, dead_letter_id, needs_operator
from tests.integration.common.kafka_support import (
    dead_letter_meta,
    dead_letters_from,
    eventually,
    group_consumer,
    read_topic,
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

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of `scrm_it_<name>` for this topic with `labels` (any other labels)."""
        want = {"topic": self.topic, **labels}
        return sum(sample.value for family in self.registry.collect() for sample in family.samples
                   if sample.name == f"scrm_it_{name}" and want.items() <= sample.labels.items())

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
              max_tries: int = 2, max_records: int = 100, backoff: Backoff = TINY) -> Running:
        registry = CollectorRegistry()
        consumer: BatchConsumer[bytes] = BatchConsumer(
            consumer=group_consumer(kafka.bootstrap, group_id=group, topic=topic, max_records=max_records),
            producer=kafka.producer, topic=topic, decode=decode or (lambda r: r.value), handle=handle,
            metrics=ConsumerMetrics("it", registry), max_tries=max_tries, backoff=backoff, max_records=max_records)
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


class _SqlState(Exception):
    """What asyncpg raises for a PostgreSQL error: an exception carrying its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"SQLSTATE {sqlstate}")
        self.sqlstate = sqlstate


def _db_error(sqlstate: str) -> DBAPIError:
    return DBAPIError("INSERT …", {}, _SqlState(sqlstate))


def _wrapped(outer: type[DBAPIError], inner: Exception) -> DBAPIError:
    """SQLAlchemy's wrapping of a driver error: `.orig` and `__cause__` are the driver's exception."""
    try:
        raise outer("SELECT …", {}, inner) from inner
    except DBAPIError as exc:
        return exc


CLASSIFICATION = [  # (failure, class)
    (ValueError("unknown currency"), "deterministic"),
    (TypeError("unsupported operand"), "deterministic"),
    (OverflowError("date value out of range"), "deterministic"),
    (KeyError("order_id"), "deterministic"),
    (PoisonMessage("not a valid event"), "deterministic"),
    (_db_error("22021"), "deterministic"),  # character not in repertoire (a NUL)
    (_db_error("22008"), "deterministic"),  # datetime field overflow
    (_db_error("23505"), "deterministic"),  # unique violation
    (IntegrityError("INSERT …", {}, _SqlState("23503")), "deterministic"),  # foreign key violation
    (OperationalError("UPDATE …", {}, _SqlState("22003")), "deterministic"),  # the SQLSTATE wins over the type
    (_wrapped(InterfaceError, ValueError("invalid input for query argument $1")), "deterministic"),  # asyncpg
    (_db_error("08006"), "transient"),  # connection failure
    (_db_error("53300"), "transient"),  # too many connections
    (_db_error("57P01"), "transient"),  # admin shutdown
    (_db_error("57P03"), "transient"),  # cannot connect now
    (_db_error("57014"), "transient"),  # query cancelled (a statement timeout)
    (_db_error("57000"), "transient"),  # operator intervention
    (_db_error("58030"), "transient"),  # I/O error
    (_db_error("58P01"), "transient"),  # undefined file
    (_db_error("28P01"), "transient"),  # invalid password: credentials rotated (logged at error)
    (_db_error("28000"), "transient"),  # invalid authorization specification
    (_db_error("3D000"), "transient"),  # invalid catalog name: the database is gone (logged at error)
    (_wrapped(OperationalError, _SqlState("3D000")), "transient"),
    (_db_error("40P01"), "transient"),  # deadlock detected
    (_db_error("40001"), "transient"),  # serialization failure
    (ConnectionResetError("connection reset by peer"), "transient"),
    (TimeoutError("timed out"), "transient"),
    (OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")), "transient"),
    (InterfaceError("SELECT 1", {}, Exception("connection is closed")), "transient"),
    (_wrapped(OperationalError, ConnectionRefusedError("connect call failed")), "transient"),
    (KafkaConnectionError("broker away"), "transient"),
    (NotLeaderForPartitionError(), "transient"),  # retriable
    (_db_error("42P01"), "unclassified"),  # undefined table: not the record's fault, not known to heal
    (_db_error("XX000"), "unclassified"),  # internal error
    (_db_error("XX001"), "unclassified"),  # data corrupted
    (RuntimeError("something else"), "unclassified"),
    (MessageSizeTooLargeError(), "unclassified"),  # a KafkaError the client does not call retriable
]


@pytest.mark.parametrize(("failure", "expected"), CLASSIFICATION, ids=[repr(c[0])[:60] for c in CLASSIFICATION])
def test_failures_are_classified_by_whether_retrying_can_heal_them(failure: BaseException, expected: str) -> None:
    assert classify(failure) == expected


@pytest.mark.parametrize(("failure", "loud"), [
    (_db_error("28P01"), True), (_db_error("3D000"), True), (_wrapped(OperationalError, _SqlState("28000")), True),
    (_db_error("57P01"), False), (_db_error("08006"), False), (ConnectionResetError("reset"), False),
    (_db_error("23505"), False),
])
def test_only_failures_an_operator_must_heal_are_logged_loudly(failure: BaseException, loud: bool) -> None:
    assert needs_operator(failure) is loud


def _record(*, offset: int = 7, timestamp: int = 1_764_000_000_000, key: bytes | None = b"k",
            value: bytes | None = b"v", topic: str = "t", partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=timestamp, timestamp_type=0,
                          key=key, value=value, checksum=None, serialized_key_size=0, serialized_value_size=0,
                          headers=())


@pytest.mark.parametrize(("other", "same"), [
    (_record(), True),  # the same record given up on again (a crash before the commit): the same dead letter
    (_record(timestamp=1_764_000_000_001), False),  # the same place after a broker restart, another record
    (_record(value=b"w"), False),
    (_record(key=b"kv", value=b""), False),  # key and value are hashed apart: no ambiguity at their seam
    (_record(key=None), False),
    (_record(offset=8), False),
    (_record(partition=1), False),
    (_record(topic="u"), False),
])
def test_the_dead_letter_id_is_stable_for_a_record_and_new_for_another(other: ConsumerRecord, same: bool) -> None:
    base = dead_letter_id("svc", _record())
    assert re.fullmatch(r"[0-9a-f]{32}", base)
    assert (dead_letter_id("svc", other) == base) is same
    assert dead_letter_id("other-svc", _record()) != base, "another service's dead letter of it is its own"


def _assert_meta(meta: dict[str, Any], *, expected: dict[str, Any], service: str, failure: str) -> None:
    """The dead-letter header: the original place, error and tries, plus who gave up, why and when."""
    assert {k: meta[k] for k in expected} == expected
    assert re.fullmatch(r"[0-9a-f]{32}", meta["id"])
    assert "truncated" not in meta
    assert (meta["service"], meta["failure"]) == (service, failure)
    at = datetime.fromisoformat(meta["at"])
    assert at.tzinfo is not None and abs((datetime.now(UTC) - at).total_seconds()) < 120


async def test_a_deterministic_failure_is_isolated_and_dead_lettered_at_once_while_good_ones_apply(
        kafka: Kafka, consumers) -> None:
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

    # Many tries allowed and a backoff far longer than the test: a retry of a deterministic failure would show.
    running = consumers(topic=topic, group=group, handle=handle, max_tries=50, backoff=Backoff(30.0, 60.0))
    await eventually(lambda: set(applied) >= good, timeout=30, what="every good record to be applied")
    await running.caught_up_after(datetime.now(UTC))
    await running.stop_cleanly()

    assert b"bad" not in applied
    assert sorted(applied) == sorted(good), "each good record applied exactly once"
    with_bad = [tuple(c) for c in calls if b"bad" in c]
    assert len(with_bad) == len(set(with_bad)), f"no batch holding the bad record is tried twice: {calls}"
    assert calls.count([b"bad"]) == 1, "alone, the bad record is tried once"
    assert running.metric("consumer_retries_total") == 0
    assert running.metric("consumer_failures_total", failure="deterministic") == len(with_bad)

    dead = await kafka.dead_letters(topic)
    assert len(dead) == 1
    assert (dead[0].key, dead[0].value) == (b"k-bad", b"bad")
    assert ("tenant", b"acme") in list(dead[0].headers), "the original headers travel with the dead letter"
    _assert_meta(dead_letter_meta(dead[0]), service=group, failure="deterministic",
                 expected={"topic": topic, "partition": 0, "offset": bad_offset,
                           "error": "ValueError: cannot apply bad", "tries": 1})
    source = next(r for r in await read_topic(kafka.bootstrap, topic, partitions=1) if r.offset == bad_offset)
    assert dead_letter_meta(dead[0])["id"] == dead_letter_id(group, source)
    assert running.metric("dead_letters_total", failure="deterministic") == 1


async def test_an_unclassified_failure_gets_a_few_tries_alone_then_is_dead_lettered_as_exhausted(
        kafka: Kafka, consumers) -> None:
    topic, group = await kafka.new_topic(1), f"g-{uuid.uuid4().hex[:8]}"
    values = [b"a", b"b", b"odd", b"c"]
    offsets = await kafka.produce(topic, values)
    calls: list[list[bytes]] = []
    applied: list[bytes] = []

    async def handle(items: Sequence[Item[bytes]]) -> None:
        batch = [i.value for i in items]
        calls.append(batch)
        if b"odd" in batch:
            raise RuntimeError("no idea why")
        applied.extend(batch)

    running = consumers(topic=topic, group=group, handle=handle, max_tries=3)
    dead = await eventually(lambda: kafka.dead_letters(topic), timeout=30, what="the exhausted dead letter")
    await eventually(lambda: set(applied) >= {b"a", b"b", b"c"}, timeout=30, what="the other records")
    await running.caught_up_after(datetime.now(UTC))
    await running.stop_cleanly()

    assert sorted(applied) == [b"a", b"b", b"c"]
    assert calls.count([b"odd"]) == 3, f"alone, tried max_tries times: {calls}"
    assert [dead_letter_meta(d)["offset"] for d in dead] == [offsets[2]]
    _assert_meta(dead_letter_meta(dead[0]), service=group, failure="exhausted",
                 expected={"error": "RuntimeError: no idea why", "tries": 3})
    assert running.metric("dead_letters_total", failure="exhausted") == 1
    assert running.metric("consumer_retries_total", failure="unclassified") == 2


@pytest.mark.parametrize("violation", [_db_error("23505"), _db_error("22P05")], ids=["unique", "untranslatable"])
async def test_a_constraint_violation_dead_letters_only_its_record_without_retry(
        kafka: Kafka, consumers, violation: DBAPIError) -> None:
    topic, group = await kafka.new_topic(1), f"g-{uuid.uuid4().hex[:8]}"
    values = [f"r-{i}".encode() for i in range(40)]
    values[17] = b"violates"
    await kafka.produce(topic, values)
    applied: list[bytes] = []
    tried_alone = 0

    async def handle(items: Sequence[Item[bytes]]) -> None:
        nonlocal tried_alone
        batch = [i.value for i in items]
        if b"violates" in batch:
            tried_alone += batch == [b"violates"]
            raise violation
        applied.extend(batch)

    running = consumers(topic=topic, group=group, handle=handle, max_tries=50, backoff=Backoff(30.0, 60.0))
    await eventually(lambda: len(applied) == 39, timeout=30, what="the 39 other records")
    dead = await eventually(lambda: kafka.dead_letters(topic), timeout=15, what="the violation's dead letter")
    await running.stop_cleanly()
    assert sorted(applied) == sorted(set(values) - {b"violates"})
    assert tried_alone == 1
    assert [d.value for d in dead] == [b"violates"]
    assert dead_letter_meta(dead[0])["failure"] == "deterministic"


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
    assert len(dead) == 1
    _assert_meta(dead_letter_meta(dead[0]), service=group, failure="deterministic",
                 expected={"topic": topic, "partition": 0, "offset": offsets[1],
                           "error": "not a valid event: expected JSON", "tries": 0})

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
        _db_error("40P01"), _db_error("57P01"), _db_error("08006"), _db_error("53300"),
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
    assert calls >= 9
    assert running.metric("consumer_retries_total", failure="transient") == 8
    assert running.metric("consumer_failures_total") == running.metric("consumer_failures_total", failure="transient")
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


async def test_a_reader_of_the_dead_letters_never_writes_one_back(kafka: Kafka, consumers) -> None:
    """A dead letter it cannot process stays where it is: writing it to the dead letters again would loop."""
    group, marker = f"g-{uuid.uuid4().hex[:8]}", f"unreadable-{uuid.uuid4().hex[:8]}".encode()
    futures = [await kafka.producer.send(topics.DEAD_LETTER, key=marker, value=marker, partition=0),
               await kafka.producer.send(topics.DEAD_LETTER, key=b"k-" + marker, value=b"fine-" + marker, partition=0)]
    await asyncio.gather(*futures)
    handled: list[bytes] = []

    async def handle(items: Sequence[Item[bytes]]) -> None:
        if any(i.value == marker for i in items):
            raise ValueError("cannot read this dead letter")
        handled.extend(i.value for i in items)

    running = consumers(topic=topics.DEAD_LETTER, group=group, handle=handle)
    await eventually(lambda: b"fine-" + marker in handled, timeout=30, what="the readable dead letter")
    await eventually(lambda: running.metric("dead_letters_total", failure="deterministic") >= 1, timeout=15,
                     what="the unreadable one given up on")
    await running.caught_up_after(datetime.now(UTC))
    await running.stop_cleanly()
    everything = await read_topic(kafka.bootstrap, topics.DEAD_LETTER, partitions=DLQ_PARTITIONS)
    assert [r.value for r in everything].count(marker) == 1, "only the original: nothing written back"


async def _dead_letters_tolerantly(kafka: Kafka, source_topic: str) -> list[ConsumerRecord]:
    """Dead letters of `source_topic`, passing over records without a `dead_letter` header (another test
    of this module writes such records to the dead-letter topic)."""
    records = await read_topic(kafka.bootstrap, topics.DEAD_LETTER, partitions=DLQ_PARTITIONS)
    return [r for r in records if any(k == "dead_letter" for k, _ in r.headers or ())
            and dead_letter_meta(r)["topic"] == source_topic]


def _largest_value(key: bytes, headers: list[tuple[str, bytes]], limit: int) -> int:
    """The value length whose record, as the producer measures it, is exactly `limit` bytes."""
    size = limit - 200
    for _ in range(10):
        measured = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"x" * size, headers)
        if measured == limit:
            return size
        size += limit - measured
    raise AssertionError("no value length measures exactly the limit")


@pytest.mark.parametrize("large", ["value", "key"])
async def test_a_record_too_large_for_its_dead_letter_is_dead_lettered_reduced_and_the_partition_moves_on(
        kafka: Kafka, consumers, large: str) -> None:
    """A record at the size limit plus the `dead_letter` header is refused by the client (aiokafka's
    max_request_size, 1 MiB, applies long before Tansu's, which took 20 MiB when tried): the dead letter
    leaves the value out (and a large key, when that is what is large), says so, and the partition moves on."""
    topic, group = await kafka.new_topic(1), f"g-{uuid.uuid4().hex[:8]}"
    headers = [("tenant", b"acme"), ("type", b"payment.succeeded")]
    limit = kafka.producer._max_request_size  # noqa: SLF001 - the limit this very producer enforces
    if large == "value":
        big_key, big_value = b"k-big", b"B" * _largest_value(b"k-big", headers, limit)
    else:
        big_key, big_value = b"K" * (_largest_value(b"", headers, limit) - 10), b"0123456789"
    sent = await asyncio.gather(*[await kafka.producer.send(topic, key=k, value=v, partition=0, headers=headers)
                                  for k, v in ((b"k-before", b"before"), (big_key, big_value), (b"k-after", b"after"))])
    big_offset = sent[1].offset
    applied: list[bytes] = []

    def decode(record: ConsumerRecord) -> bytes:
        if record.key == big_key:
            raise PoisonMessage("not a valid event: " + "too big " * 20)
        return record.value

    async def handle(items: Sequence[Item[bytes]]) -> None:
        applied.extend(i.value for i in items)

    running = consumers(topic=topic, group=group, handle=handle, decode=decode, backoff=Backoff(30.0, 60.0))
    await eventually(lambda: b"after" in applied, timeout=30, what="the record behind the oversized one")
    dead = await eventually(lambda: _dead_letters_tolerantly(kafka, topic), timeout=15, what="the reduced dead letter")
    await running.caught_up_after(datetime.now(UTC))
    await running.stop_cleanly()

    assert applied == [b"before", b"after"]
    assert len(dead) == 1
    assert [h for h in dead[0].headers if h[0] != "dead_letter"] == headers, "small headers are kept"
    meta = dead_letter_meta(dead[0])
    assert {k: meta[k] for k in ("topic", "offset", "failure", "service", "truncated", "value_size",
                                 "value_sha256")} == {
        "topic": topic, "offset": big_offset, "failure": "deterministic", "service": group, "truncated": True,
        "value_size": len(big_value), "value_sha256": hashlib.sha256(big_value).hexdigest()}
    assert meta["error"].startswith("not a valid event: too big")
    if large == "value":
        assert (dead[0].key, dead[0].value) == (big_key, None), "the value is left out"
        assert "key_size" not in meta
    else:
        assert (dead[0].key, dead[0].value) == (None, b""), "a record needs a key or a value: an empty one"
        assert (meta["key_size"], meta["key_sha256"]) == (len(big_key), hashlib.sha256(big_key).hexdigest())
    source = next(r for r in await read_topic(kafka.bootstrap, topic, partitions=1) if r.offset == big_offset)
    assert meta["id"] == dead_letter_id(group, source)
    assert running.metric("dead_letters_total") == 1
    # The offset was committed: the group's next member starts behind the oversized record.
    again: list[bytes] = []

    async def collect(items: Sequence[Item[bytes]]) -> None:
        again.extend(i.value for i in items)

    await kafka.produce(topic, [b"later"])
    following = consumers(topic=topic, group=group, handle=collect)
    await eventually(lambda: b"later" in again, timeout=40, what="the record produced afterwards")
    await following.stop_cleanly()
    assert again == [b"later"]
    assert len(await _dead_letters_tolerantly(kafka, topic)) == 1
