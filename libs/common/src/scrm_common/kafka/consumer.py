"""The consume loop: batches via getmany, effect then commit, retries with backoff, dead letters."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from scrm_common.backoff import Backoff
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import PoisonMessage
from scrm_common.settings import CommonSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures of infrastructure, not of the message: retried until they heal, never dead-lettered.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, OperationalError, InterfaceError)
# PostgreSQL's answers that mean "try the same transaction again" (deadlock, serialization failure).
_RETRY_SQLSTATES = {"40P01", "40001"}


def is_transient(exc: BaseException) -> bool:
    """True for failures that retrying heals, whatever the message: infrastructure, deadlocks."""
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(getattr(exc.orig, "__cause__", None),
                                                                    "sqlstate", None)
        return sqlstate in _RETRY_SQLSTATES
    return False


def make_consumer(bootstrap: str, *, group_id: str, topic: str, max_records: int) -> AIOKafkaConsumer:
    """A consumer in `group_id` that commits by hand, after the effect."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=1_000,
        rebalance_timeout_ms=20_000,
    )


@dataclass(frozen=True, slots=True)
class Item(Generic[T]):
    """A decoded record, still knowing where it came from."""

    record: ConsumerRecord
    value: T


class ConsumerMetrics:
    """Throughput, failures, dead letters, lag and batch latency of one consume loop."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"scrm_{service.replace('-', '_')}"
        self.records = Counter(f"{p}_consumed_records_total", "Records consumed", ["topic"], registry=registry)
        self.retries = Counter(f"{p}_consumer_retries_total", "Batch or record retries", ["topic"],
                               registry=registry)
        self.dead = Counter(f"{p}_dead_letters_total", "Records sent to dead letters", ["topic"],
                            registry=registry)
        self.lag = Gauge(f"{p}_consumer_lag_records", "Records behind the high watermark", ["topic"],
                         registry=registry)
        self.batch_seconds = Histogram(f"{p}_batch_duration_seconds", "Time to apply one batch", ["topic"],
                                       registry=registry)


class BatchConsumer(Generic[T]):
    """Applies batches of decoded records; commits a batch only after its effect is durable."""

    def __init__(
        self,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        topic: str,
        decode: Callable[[ConsumerRecord], T | None],
        handle: Callable[[Sequence[Item[T]]], Awaitable[None]],
        metrics: ConsumerMetrics,
        max_tries: int,
        backoff: Backoff,
        max_records: int,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._topic = topic
        self._decode = decode
        self._handle = handle
        self._metrics = metrics
        self._max_tries = max_tries
        self._backoff = backoff
        self._max_records = max_records
        self.ready = False
        # When this consumer last had nothing left to read: everything produced before it was applied.
        self.caught_up_at: datetime | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set."""
        await self._consumer.start()
        self.ready = True
        try:
            while not stop.is_set():
                polled_at = datetime.now(UTC)
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self._max_records)
                if batches:
                    await self._apply(batches)
                if await self._caught_up(since_ms=polled_at.timestamp() * 1000):
                    self.caught_up_at = polled_at
        finally:
            self.ready = False
            await self._consumer.stop()

    async def _caught_up(self, *, since_ms: float) -> bool:
        """True when every assigned partition was fetched after `since_ms` and nothing is left behind it."""
        assigned = set(self._consumer.assignment())
        if not assigned:
            return False
        try:
            for tp in assigned:
                if tp not in self._consumer.assignment():
                    return False  # a rebalance is under way: not a moment to call anything caught up
                high = self._consumer.highwater(tp)
                fetched_ms = self._consumer.last_poll_timestamp(tp)
                if high is None or fetched_ms is None or fetched_ms < since_ms:
                    return False
                if await self._consumer.position(tp) < high:
                    return False
        except (IllegalStateError, AssertionError, KafkaError):
            return False
        return True

    async def _apply(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> int:
        """Apply and commit a batch; return the lag left behind it."""
        items: list[Item[T]] = []
        for records in batches.values():
            for record in records:
                try:
                    value = self._decode(record)
                except PoisonMessage as exc:
                    await self._dead_letter(record, str(exc), tries=0)
                    continue
                if value is not None:  # None: not this consumer's business; committed with the rest
                    items.append(Item(record, value))
        self._metrics.records.labels(self._topic).inc(sum(len(r) for r in batches.values()))
        started = time.perf_counter()
        if items:
            await self._handle_with_retries(items)
        self._metrics.batch_seconds.labels(self._topic).observe(time.perf_counter() - started)
        offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions away; their new owner re-applies, idempotently.
            log.warning("commit failed, records will be redelivered: %s", exc)
        lag = 0
        for tp, records in batches.items():
            try:
                high = self._consumer.highwater(tp) if tp in self._consumer.assignment() else None
            except (IllegalStateError, AssertionError):
                high = None  # revoked meanwhile
            if high is not None:
                lag += max(0, high - (records[-1].offset + 1))
        self._metrics.lag.labels(self._topic).set(lag)
        return lag

    async def _handle_with_retries(self, items: list[Item[T]]) -> None:
        try:
            await self._retrying(items)
        except _GiveUp:
            # Isolate the poison: apply one by one, dead-lettering only what fails on its own.
            for item in items:
                try:
                    await self._retrying([item])
                except _GiveUp as exc:
                    await self._dead_letter(item.record, exc.reason, tries=self._max_tries)

    async def _retrying(self, items: list[Item[T]]) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._handle(items)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._metrics.retries.labels(self._topic).inc()
                if is_transient(exc):
                    log.warning("transient failure (attempt %d), retrying: %r", attempt, exc)
                    await asyncio.sleep(self._backoff.delay(min(attempt, 16)))
                    continue
                if attempt >= self._max_tries:
                    raise _GiveUp(f"{type(exc).__name__}: {exc}") from exc
                log.warning("failure (attempt %d/%d), retrying: %r", attempt, self._max_tries, exc)
            await asyncio.sleep(self._backoff.delay(min(attempt, 16)))

    async def _dead_letter(self, record: ConsumerRecord, reason: str, *, tries: int) -> None:
        self._metrics.dead.labels(self._topic).inc()
        log.error("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
        meta = json.dumps({"topic": record.topic, "partition": record.partition, "offset": record.offset,
                           "error": reason[:2000], "tries": tries})
        headers = [*(record.headers or ()), ("dead_letter", meta.encode())]
        attempt = 0
        while True:  # the offset is committed only once the dead letter is stored: keep trying
            attempt += 1
            try:
                await (await self._producer.send(topics.DEAD_LETTER, key=record.key, value=record.value,
                                                 headers=headers))
                return
            except KafkaError as exc:
                log.warning("dead letter not stored (attempt %d), retrying: %r", attempt, exc)
                await asyncio.sleep(self._backoff.delay(min(attempt, 16)))


class _GiveUp(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def batch_consumer(
    settings: CommonSettings, *, group_id: str, topic: str, producer: AIOKafkaProducer,
    decode: Callable[[ConsumerRecord], T | None], handle: Callable[[Sequence[Item[T]]], Awaitable[None]],
    metrics: ConsumerMetrics,
) -> BatchConsumer[T]:
    """A BatchConsumer configured from the shared settings (batch size, tries, backoff)."""
    return BatchConsumer(
        consumer=make_consumer(settings.kafka_bootstrap, group_id=group_id, topic=topic,
                               max_records=settings.consumer_max_records),
        producer=producer, topic=topic, decode=decode, handle=handle, metrics=metrics,
        max_tries=settings.consumer_max_tries,
        backoff=Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
        max_records=settings.consumer_max_records,
    )
