"""The transactional outbox: rows written with a state change, relayed to Kafka afterwards.

Each service keeps an `outbox` table in its own schema (see its migrations). A crash after
publishing and before deleting re-publishes the rows; every consumer is idempotent, so that is harmless.

While the process's intake is closed (`scrm_common.runtime.INTAKE`, SIGUSR1: the last phase of a graceful stop)
the relay publishes nothing: rows stay in PostgreSQL and go out once intake opens again (SIGUSR2) or at the next
start, so a broker that is about to stop (the embedded, memory-only one) never receives a record nobody reads.
A batch already being published when intake closes finishes first.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common import runtime
from scrm_common.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A Kafka record waiting to be published."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, str]]


async def enqueue(conn: AsyncConnection, rows: Sequence[OutboxRow]) -> None:
    """Add rows to the outbox inside the caller's transaction."""
    if not rows:
        return
    await conn.execute(text(
        "INSERT INTO outbox(topic, key, value, headers) VALUES (:topic, :key, :value, CAST(:headers AS jsonb))"),
        [{"topic": r.topic, "key": r.key, "value": r.value, "headers": json.dumps(r.headers)} for r in rows])


class OutboxRelay:
    """Moves outbox rows to Kafka in batches, woken right after a commit or by polling."""

    def __init__(self, *, service: str, engine: AsyncEngine, producer: AIOKafkaProducer, batch_size: int,
                 poll_seconds: float, registry: CollectorRegistry) -> None:
        prefix = f"scrm_{service.replace('-', '_')}"
        self._engine = engine
        self._producer = producer
        self._batch_size = batch_size
        self._poll = poll_seconds
        self._wake = asyncio.Event()
        self._backoff = Backoff(base_seconds=0.1, max_seconds=5.0)
        self._relayed = Counter(f"{prefix}_outbox_relayed_total", "Records published from the outbox",
                                registry=registry)
        self._pending = Gauge(f"{prefix}_outbox_batch_records", "Outbox rows found at the last pass",
                              registry=registry)

    def wake(self) -> None:
        """Called after a commit that wrote outbox rows."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; paused (nothing read, nothing published) while `runtime.INTAKE` is closed."""
        failures = 0
        while not stop.is_set():
            if not runtime.INTAKE.open:  # draining for a stop: the rows wait in PostgreSQL
                await self._idle()
                continue
            try:
                moved = await self.relay_once()
                failures = 0
            except Exception as exc:
                # Rows stay in the outbox until published; a broker or database hiccup only delays them.
                failures += 1
                log.warning("outbox relay failed (%d in a row), retrying: %r", failures, exc)
                await asyncio.sleep(self._backoff.delay(min(failures, 10)))
                continue
            if moved < self._batch_size:
                await self._idle()

    async def _idle(self) -> None:
        """Wait for a wake-up or the poll interval, whichever comes first."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
        except TimeoutError:
            pass

    async def relay_once(self) -> int:
        """Publish one batch of outbox rows; return how many moved."""
        async with self._engine.begin() as conn:
            rows = (await conn.execute(text(
                "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED"),
                {"n": self._batch_size})).all()
            self._pending.set(len(rows))
            if not rows:
                return 0
            futures = [
                await self._producer.send(r.topic, key=bytes(r.key), value=bytes(r.value),
                                          headers=[(k, v.encode()) for k, v in r.headers])
                for r in rows
            ]
            await asyncio.gather(*futures)
            await conn.execute(text("DELETE FROM outbox WHERE id = ANY(CAST(:ids AS bigint[]))"),
                               {"ids": [r.id for r in rows]})
        self._relayed.inc(len(rows))
        return len(rows)
