"""Dead letters kept for operators: the consumer of `scrm.dead-letter.v1` stores each once; replay republishes.

Reporting is the read side of operations (ARCHITECTURE), so it owns the dead-letter store. A dead letter is
stored once per dead-letter id (older records without one: per source topic, partition, offset and service):
redelivery of the dead-letter record, or the consume loop writing it twice, changes nothing, while a new
record at an offset seen before (the memory-only broker starts again at 0) is stored as the new one it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from reporting.domain.dead_letters import Header, NewDeadLetter, is_own_failure, read_dead_letter
from scrm_common.kafka.consumer import Item


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A stored dead letter (`id` is the store's, increasing with arrival)."""

    id: int
    letter: NewDeadLetter
    stored_at: datetime
    replayed_at: datetime | None
    replay_count: int


@dataclass(frozen=True, slots=True)
class Republished:
    """Where a replay put the record again."""

    topic: str
    partition: int
    offset: int


Publish = Callable[[StoredDeadLetter], Awaitable[Republished]]


class DeadLetterStore(Protocol):
    """Where dead letters are kept (schema `reporting`, table `dead_letters`)."""

    async def add(self, letters: Sequence[NewDeadLetter]) -> list[str | None]:
        """Store dead letters not stored before (one transaction); return the services of those that were new."""

    async def page(self, tenant: str, *, service: str | None, event_type: str | None, replayed: bool | None,
                   before: int | None, limit: int) -> list[StoredDeadLetter]:
        """`tenant`'s dead letters, newest first, with ids below `before` when given; at most `limit`."""

    async def get(self, tenant: str, letter_id: int) -> StoredDeadLetter | None:
        """`tenant`'s dead letter `letter_id`, or None (also when it is another tenant's)."""

    async def replay(self, tenant: str, letter_id: int, *, force: bool, now: datetime,
                     publish: Publish) -> tuple[StoredDeadLetter, Republished] | None:
        """Lock the dead letter, check it may be replayed (`domain.dead_letters.check_replay`, whose errors
        it raises), publish it and mark it replayed, in one transaction; None when `tenant` has no such one."""


class DeadLetterMetrics:
    """`scrm_reporting_dead_letters_stored_total{service}` and `…_replayed_total{topic}`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.stored = Counter("scrm_reporting_dead_letters_stored_total",
                              "Dead letters newly stored for inspection and replay, by the service that gave up",
                              ["service"], registry=registry)
        self.replayed = Counter("scrm_reporting_dead_letters_replayed_total",
                                "Dead letters republished to their original topic", ["topic"], registry=registry)


def decode_dead_letter(record: Any) -> NewDeadLetter | None:
    """A consumed dead-letter record as a NewDeadLetter; None for the store's own failures (never raises)."""
    headers: list[Header] = list(record.headers or ())
    if is_own_failure(headers):
        return None
    return read_dead_letter(record.key, record.value, headers, dl_partition=record.partition,
                            dl_offset=record.offset, received_at=datetime.fromtimestamp(record.timestamp / 1000, UTC))


class StoreDeadLetters:
    """The dead-letter consumer's handler: one transaction per batch, each dead letter stored once."""

    def __init__(self, *, store: DeadLetterStore, metrics: DeadLetterMetrics) -> None:
        self._store = store
        self._metrics = metrics

    async def __call__(self, items: Sequence[Item[NewDeadLetter]]) -> None:
        for service in await self._store.add([item.value for item in items]):
            self._metrics.stored.labels(service or "unknown").inc()
