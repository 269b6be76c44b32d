"""Failed messages in their persons' stories: a consumer of `scrm.events.v1` of its own
(`trigger-engine-outcomes`) reads the `failed` `message.status` events and records a line (outcome `failed`,
the reason and error code) in the decision log of the person the message's Send was decided for."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.contracts.envelope import decode_event
from scrm_common.kafka.consumer import Item
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.outcomes import decided_sends, record_failures
from trigger_engine.domain.outcomes import FailedMessage, failed_message, surely_not_failed


def decode_failure(record: Any) -> FailedMessage | None:
    """A consumed record of `scrm.events.v1` as the failure it tells; None for everything else.

    Records that surely are no failed status are skipped unparsed; the rest is parsed as any consumer of
    events does (PoisonMessage for a record that is no valid event: the consume loop dead-letters it).
    """
    headers = list(record.headers or ())
    if surely_not_failed(headers, record.value):
        return None
    return failed_message(decode_event(record.key, record.value, headers))


class OutcomeMetrics:
    """`scrm_trigger_engine_story_failures_total{result}`: failed statuses read, by what became of them —
    `told` (a new line), `again` (told before: redelivered), `not_decided_here` (no Send of ours has the key)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter("scrm_trigger_engine_story_failures_total",
                                "Failed-message statuses read for the decision story, by result", ["result"],
                                registry=registry)


class TellFailures:
    """The outcome consumer's handler: one transaction per batch, one line per failed status of a Send of ours."""

    def __init__(self, *, engine: AsyncEngine, repository: EngineRepository, metrics: OutcomeMetrics) -> None:
        self._engine = engine
        self._repo = repository
        self._metrics = metrics

    async def __call__(self, items: Sequence[Item[FailedMessage]]) -> None:
        failures = {(i.value.tenant, i.value.event_id): i.value for i in items}  # a copy inside the batch: once
        keys = {(f.tenant, f.idempotency_key) for f in failures.values()}
        async with self._engine.begin() as conn:
            sends = await self._locked_sends(conn, keys)
            lines = [(f, *sends[(f.tenant, f.idempotency_key)]) for f in failures.values()
                     if (f.tenant, f.idempotency_key) in sends]
            told = await record_failures(conn, lines)
        self._metrics.failures.labels("told").inc(told)
        self._metrics.failures.labels("again").inc(len(lines) - told + len(items) - len(failures))
        self._metrics.failures.labels("not_decided_here").inc(len(failures) - len(lines))

    async def _locked_sends(self, conn: AsyncConnection, keys: set[tuple[str, str]]
                            ) -> dict[tuple[str, str], tuple[str, str]]:
        """(tenant, key) → (person, flow) of our Sends, each person locked — so a merge running meanwhile
        (it holds the persons' locks while it moves their decisions) moves the line with the rest — and read
        again after locking, a person merged away replaced by the one it merged into."""
        sends = await decided_sends(conn, keys)
        locked: set[tuple[str, str]] = set()
        while persons := {(tenant, person) for (tenant, _), (person, _) in sends.items()} - locked:
            await self._repo.lock_persons(conn, persons)
            locked |= persons
            sends = await decided_sends(conn, keys)
        return sends
