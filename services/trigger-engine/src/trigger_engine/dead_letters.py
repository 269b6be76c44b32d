"""Dead-lettered events in their contacts' stories: the consumer of `scrm.dead-letter.v1` records a line
(outcome `dead_lettered`, the service and its error) in the decision log of the person the event names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.kafka.consumer import Item
from trigger_engine.adapters.db import EngineRepository
from trigger_engine.adapters.dead_letters import record_dead_letter
from trigger_engine.domain.dead_letters import DeadLetterLine, person_aliases, story_line


def decode_dead_letter(record: Any) -> DeadLetterLine | None:
    """A consumed dead letter as its story line; None when it tells no contact's story (never raises)."""
    return story_line(record.key, record.value, list(record.headers or ()),
                      received_at=datetime.fromtimestamp(record.timestamp / 1000, UTC))


class StoryMetrics:
    """`scrm_trigger_engine_story_dead_letters_total`: dead-lettered events newly told in a contact's story."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.told = Counter("scrm_trigger_engine_story_dead_letters_total",
                            "Dead-lettered events recorded in their contact's decision story", registry=registry)


class TellDeadLetters:
    """The dead-letter consumer's handler: one transaction per batch, one line per dead letter."""

    def __init__(self, *, engine: AsyncEngine, repository: EngineRepository, metrics: StoryMetrics) -> None:
        self._engine = engine
        self._repo = repository
        self._metrics = metrics

    async def __call__(self, items: Sequence[Item[DeadLetterLine]]) -> None:
        told = 0
        async with self._engine.begin() as conn:
            for item in items:
                line = item.value
                told += await record_dead_letter(conn, line, await self._person(conn, line))
        self._metrics.told.inc(told)

    async def _person(self, conn: AsyncConnection, line: DeadLetterLine) -> str:
        """The person the line's contact is (locked, so a merge running meanwhile moves the line with the
        person's other decisions); the contact's own key when no person is known yet — the key a person
        created for it later gets."""
        aliases = [alias for alias in person_aliases(line.contact) if "\x00" not in alias]
        fallback = line.contact.key.replace("\x00", "\ufffd")
        person = await self._repo.person_for(conn, line.tenant, aliases) or fallback
        while True:
            await self._repo.lock_persons(conn, [(line.tenant, person)])
            now = await self._repo.person_for(conn, line.tenant, aliases) or fallback
            if now == person:
                return person
            person = now
