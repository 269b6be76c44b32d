"""The consume loop: batches via getmany, effect then commit; a failure is retried or dead-lettered by its class.

`classify` sorts a failure: **deterministic** (the record can never be processed: it does not decode,
does not validate, its data breaks a constraint) — isolated from its batch and dead-lettered at once;
**transient** (the database or the broker is away) — the batch is retried with backoff until it heals,
never dead-lettered; **unclassified** — a few quick tries, then dead-lettered as "exhausted".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Literal, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    KafkaUnavailableError,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.exc import DataError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from scrm_common.backoff import Backoff
from scrm_common.contracts import dead_letter, topics
from scrm_common.contracts.envelope import PoisonMessage
from scrm_common.settings import CommonSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

FailureClass = Literal["deterministic", "transient", "unclassified"]
DETERMINISTIC: FailureClass = "deterministic"
TRANSIENT: FailureClass = "transient"
UNCLASSIFIED: FailureClass = "unclassified"
# The `failure` of a dead letter: never processable, or unclassified and out of tries.
DeadLetterFailure = Literal["deterministic", "exhausted"]

# PostgreSQL SQLSTATEs by class (first two characters) or exact code. Deterministic: 22 data exception
# (a value out of range, invalid text such as NUL, datetime overflow …), 23 integrity constraint violation,
# 40002 (a constraint violated at commit). Transient: 08 connection exception, 53 insufficient resources,
# 57 operator intervention (57014 query cancelled — a statement timeout —, 57P01…57P05 shutdown, crash
# shutdown, cannot connect now, database dropped, idle session timeout), 58 system error (I/O, a file
# gone), 40001/40P01/40003 (serialization failure, deadlock, completion unknown), 55P03 lock not available,
# and — logged at error, since only an operator heals them — 28 invalid authorization (credentials
# rotated or revoked) and 3D invalid catalog name (the database is gone). XX (internal error, data or
# index corrupted) stays unclassified: neither the record's fault nor known to heal.
_SQLSTATE_CODES: dict[str, FailureClass] = {
    "40002": DETERMINISTIC, "40001": TRANSIENT, "40P01": TRANSIENT, "40003": TRANSIENT, "55P03": TRANSIENT,
}
_SQLSTATE_CLASSES: dict[str, FailureClass] = {"22": DETERMINISTIC, "23": DETERMINISTIC, "08": TRANSIENT,
                                              "53": TRANSIENT, "57": TRANSIENT, "58": TRANSIENT,
                                              "28": TRANSIENT, "3D": TRANSIENT}
# Transient classes that wait for an operator (credentials, a dropped database): retried, but logged at error.
_LOUD_SQLSTATE_CLASSES = frozenset({"28", "3D"})
# By type, for failures without a SQLSTATE. A pure decision over bad data fails with these every time.
_DETERMINISTIC_TYPES: tuple[type[BaseException], ...] = (
    ValueError,  # pydantic's ValidationError, PoisonMessage, JSON and Unicode errors, asyncpg's DataError
    TypeError, ArithmeticError, LookupError,  # OverflowError (a date past year 9999), KeyError, IndexError …
    IntegrityError, DataError,
)
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    OSError, TimeoutError,  # connection refused/reset, timeouts (asyncio's included)
    OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError,  # SQLAlchemy: connection lost, pool
    KafkaConnectionError, KafkaTimeoutError, KafkaUnavailableError,
    httpx.TransportError,  # a sibling service or provider unreachable, timed out
)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps (SQLAlchemy's `.orig`, then `__cause__`), outermost first."""
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(out) < 16 and all(current is not seen for seen in out):
        out.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return out


def _sqlstate(exc: BaseException) -> str | None:
    code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return code if isinstance(code, str) and len(code) == 5 else None


def classify(exc: BaseException) -> FailureClass:
    """Whether retrying can heal `exc`: deterministic, transient or unclassified (see the module docstring).

    A PostgreSQL SQLSTATE anywhere in the chain decides (an unknown one is unclassified); otherwise the
    innermost exception whose type is known does — asyncpg's DataError (a ValueError) wrapped in
    SQLAlchemy's InterfaceError is bad data, not a lost connection. A KafkaError counts as transient when
    the client says it is retriable.
    """
    chain = _chain(exc)
    for link in chain:
        if (code := _sqlstate(link)) is not None:
            return _SQLSTATE_CODES.get(code) or _SQLSTATE_CLASSES.get(code[:2]) or UNCLASSIFIED
    for link in reversed(chain):
        if isinstance(link, _TRANSIENT_TYPES) or (isinstance(link, KafkaError) and link.retriable):
            return TRANSIENT
        if isinstance(link, _DETERMINISTIC_TYPES):
            return DETERMINISTIC
    return UNCLASSIFIED


def needs_operator(exc: BaseException) -> bool:
    """True for transient failures only an operator heals (SQLSTATE class 28 credentials, 3D database gone)."""
    return any((code := _sqlstate(link)) is not None and code[:2] in _LOUD_SQLSTATE_CLASSES for link in _chain(exc))


def is_transient(exc: BaseException) -> bool:
    """True for failures that retrying heals, whatever the message: infrastructure, deadlocks."""
    return classify(exc) == TRANSIENT


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
    """Throughput, failures by class, dead letters by failure, lag and batch latency of one consume loop."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"scrm_{service.replace('-', '_')}"
        self.records = Counter(f"{p}_consumed_records_total", "Records consumed", ["topic"], registry=registry)
        self.failures = Counter(f"{p}_consumer_failures_total",
                                "Failed applications of a batch or record, by failure class "
                                "(deterministic, transient, unclassified)", ["topic", "failure"], registry=registry)
        self.retries = Counter(f"{p}_consumer_retries_total", "Batch or record retries, by failure class",
                               ["topic", "failure"], registry=registry)
        self.dead = Counter(f"{p}_dead_letters_total", "Records sent to dead letters, by failure "
                            "(deterministic, exhausted)", ["topic", "failure"], registry=registry)
        self.lag = Gauge(f"{p}_consumer_lag_records", "Records behind the high watermark", ["topic"],
                         registry=registry)
        self.batch_seconds = Histogram(f"{p}_batch_duration_seconds", "Time to apply one batch", ["topic"],
                                       registry=registry)


@dataclass(frozen=True, slots=True)
class _Failed:
    """Why a batch or record was given up on: its failure, the error text, the tries made."""

    failure: DeadLetterFailure
    reason: str
    tries: int


class BatchConsumer(Generic[T]):
    """Applies batches of decoded records; commits a batch only after its effect is durable.

    A record that fails to decode is dead-lettered at once. A failing batch is retried while its failure
    is transient; otherwise it is halved until the records that fail on their own are found, which are
    dead-lettered (deterministic: at once; unclassified: after `max_tries` quick tries) while the rest
    is applied in order. `service` (default: the consumer's group id) names this loop in dead letters.
    """

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
        service: str | None = None,
    ) -> None:
        self._consumer = consumer
        self._service = service or str(getattr(consumer, "_group_id", None) or "")
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
                except Exception as exc:  # noqa: BLE001 - decoding is a function of the bytes: it fails every time
                    self._metrics.failures.labels(self._topic, DETERMINISTIC).inc()
                    reason = str(exc) if isinstance(exc, PoisonMessage) else _describe(exc)
                    await self._dead_letter(record, reason, tries=0, failure="deterministic")
                    continue
                if value is not None:  # None: not this consumer's business; committed with the rest
                    items.append(Item(record, value))
        self._metrics.records.labels(self._topic).inc(sum(len(r) for r in batches.values()))
        started = time.perf_counter()
        if items:
            await self._settle(items)
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

    async def _settle(self, items: Sequence[Item[T]]) -> None:
        """Apply `items` in order; dead-letter exactly those that cannot be applied on their own.

        A batch that fails (not transiently) is tried once and halved; a single record gets `max_tries`
        tries if its failure is unclassified, one if it is deterministic. Records of a half that applies
        are applied once; halving finds k bad records among n in about 2·k·log2(n) tries.
        """
        failed = await self._attempt(items, max_tries=1 if len(items) > 1 else self._max_tries)
        if failed is None:
            return
        if len(items) == 1:
            await self._dead_letter(items[0].record, failed.reason, tries=failed.tries, failure=failed.failure)
            return
        middle = len(items) // 2
        await self._settle(items[:middle])
        await self._settle(items[middle:])

    async def _attempt(self, items: Sequence[Item[T]], *, max_tries: int) -> _Failed | None:
        """Handle `items`: None once applied. Transient failures are retried with backoff for as long as
        they last; a deterministic one gives up at once, an unclassified one after `max_tries` tries."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._handle(items)
                return None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                failure = classify(exc)
                self._metrics.failures.labels(self._topic, failure).inc()
                if failure == DETERMINISTIC:
                    if len(items) == 1:
                        log.warning("record %s[%d]@%d can never be processed: %r", items[0].record.topic,
                                    items[0].record.partition, items[0].record.offset, exc)
                    return _Failed("deterministic", _describe(exc), attempt)
                if failure == UNCLASSIFIED and attempt >= max_tries:
                    return _Failed("exhausted", _describe(exc), attempt)
                self._metrics.retries.labels(self._topic, failure).inc()
                log.log(logging.ERROR if needs_operator(exc) else logging.WARNING,
                        "%s failure (attempt %d, %d records), retrying: %r", failure, attempt, len(items), exc)
            await asyncio.sleep(self._backoff.delay(min(attempt, 16)))

    async def _dead_letter(self, record: ConsumerRecord, reason: str, *, tries: int,
                           failure: DeadLetterFailure) -> None:
        """Write `record` to the dead letters; return once it is stored, so its offset may be committed.

        Retriable broker failures are retried for as long as they last. A dead letter the broker or client
        refuses for good (MessageSizeTooLargeError: a record near the size limit plus the `dead_letter`
        header) is written reduced instead: first without its value, then also without a large key and
        large headers; the header says so (`truncated`, the sizes and SHA-256 of what was left out). A dead
        letter refused for any other lasting reason even when reduced is retried and logged at error: the
        partition waits rather than losing the record without a trace.
        """
        self._metrics.dead.labels(self._topic, failure).inc()
        if record.topic == topics.DEAD_LETTER:
            # A reader of the dead letters gave up on one: it stays where it is. Writing it there again
            # would feed it back to this very loop.
            log.error("giving up on dead letter %s[%d]@%d (%s), left where it is: %s", record.topic,
                      record.partition, record.offset, failure, reason)
            return
        log.error("dead-lettering %s[%d]@%d (%s): %s", record.topic, record.partition, record.offset, failure,
                  reason)
        meta: dict[str, object] = {
            "id": dead_letter_id(self._service, record), "topic": record.topic, "partition": record.partition,
            "offset": record.offset, "error": reason[:2000], "tries": tries, "service": self._service,
            "failure": failure, "at": datetime.now(UTC).isoformat()}
        for reduced in range(3):
            attempt = 0
            while True:  # the offset is committed only once the dead letter is stored: keep trying
                attempt += 1
                key, value, headers = _reduced(record, meta, reduced)
                try:
                    await (await self._producer.send(topics.DEAD_LETTER, key=key, value=value, headers=headers))
                    return
                except KafkaError as exc:
                    if classify(exc) != TRANSIENT and reduced < 2:
                        log.error("dead letter of %s[%d]@%d refused (%r): writing it without %s", record.topic,
                                  record.partition, record.offset, exc,
                                  "its value" if reduced == 0 else "its value and large key or headers")
                        break
                    log.log(logging.WARNING if classify(exc) == TRANSIENT else logging.ERROR,
                            "dead letter not stored (attempt %d), retrying: %r", attempt, exc)
                await asyncio.sleep(self._backoff.delay(min(attempt, 16)))


def _sha256(raw: bytes | None) -> str | None:
    return None if raw is None else hashlib.sha256(raw).hexdigest()


def dead_letter_id(service: str, record: ConsumerRecord) -> str:
    """The stable name of a dead letter: 32 hex digits of SHA-256 over the service, the record's place
    (topic, partition, offset), its timestamp (ms) and the SHA-256 of its key and value.

    The same record given up on twice (a crash between writing the dead letter and committing) gets the
    same id; a different record at the same place (the memory-only broker restarts its offsets at 0 on
    every `make run`) gets another, so readers keep both.
    """
    content = json.dumps([_sha256(record.key), _sha256(record.value)]).encode()
    name = json.dumps([service, record.topic, record.partition, record.offset, record.timestamp,
                       hashlib.sha256(content).hexdigest()])
    return hashlib.sha256(name.encode()).hexdigest()[:32]


_SMALL_HEADER = 512  # bytes of name and value: a header kept in a dead letter reduced to its essentials
_SMALL_KEY = 1024


def _reduced(record: ConsumerRecord, meta: dict[str, object], level: int
             ) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """Key, value and headers of the dead letter of `record`: whole (level 0), without the value (1), or
    also without a key over `_SMALL_KEY` bytes and headers over `_SMALL_HEADER` (2); what was left out is
    described in the `dead_letter` header."""
    key, value, original = record.key, record.value, list(record.headers or ())
    if level >= 1:
        meta = {**meta, "truncated": True, "value_size": None if value is None else len(value),
                "value_sha256": _sha256(value)}
        value = None
    if level >= 2:  # a large key or headers: drop those, keep the small ones (tenant, type …) readers need
        kept = [(name, raw) for name, raw in original if len(name) + len(raw or b"") <= _SMALL_HEADER]
        meta = {**meta, "headers_dropped": len(original) - len(kept)}
        if key is not None and len(key) > _SMALL_KEY:
            meta |= {"key_size": len(key), "key_sha256": _sha256(key)}
            key = None
        original = kept
    if level >= 1 and key is None:
        value = b""  # a record needs a key or a value; `truncated` tells readers it is not the value
    return key, value, [*original, (dead_letter.HEADER, json.dumps(meta).encode())]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def batch_consumer(
    settings: CommonSettings, *, group_id: str, topic: str, producer: AIOKafkaProducer,
    decode: Callable[[ConsumerRecord], T | None], handle: Callable[[Sequence[Item[T]]], Awaitable[None]],
    metrics: ConsumerMetrics,
) -> BatchConsumer[T]:
    """A BatchConsumer configured from the shared settings (batch size, tries, backoff)."""
    return BatchConsumer(
        consumer=make_consumer(settings.kafka_bootstrap, group_id=group_id, topic=topic,
                               max_records=settings.consumer_max_records),
        producer=producer, topic=topic, decode=decode, handle=handle, metrics=metrics, service=group_id,
        max_tries=settings.consumer_max_tries,
        backoff=Backoff(settings.retry_base_seconds, settings.retry_max_seconds),
        max_records=settings.consumer_max_records,
    )
