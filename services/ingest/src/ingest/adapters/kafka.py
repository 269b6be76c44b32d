"""Publishing events to `scrm.events.v1`: answered only after the broker acknowledged all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaProducer

from scrm_common.contracts import topics
from scrm_common.contracts.envelope import encode_event
from scrm_common.contracts.events import Event

Record = tuple[bytes, bytes, list[tuple[str, bytes]]]


class EventPublisher:
    """Sends a batch of a tenant's events and waits for every acknowledgement (acks=all)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    @staticmethod
    def encode(tenant: str, events: Sequence[Event], *, ingested_at: datetime, correlation_id: str) -> list[Record]:
        """The Kafka records for a batch, so their sizes can be checked before anything is sent."""
        return [encode_event(tenant, e, ingested_at=ingested_at, correlation_id=correlation_id) for e in events]

    async def send(self, records: Sequence[Record]) -> None:
        """Produce encoded records and return once the broker acknowledged all; raises aiokafka's KafkaError."""
        futures = [await self._producer.send(topics.EVENTS, key=k, value=v, headers=h) for k, v, h in records]
        await asyncio.gather(*futures)

    async def publish(
        self, tenant: str, events: Sequence[Event], *, ingested_at: datetime, correlation_id: str
    ) -> None:
        """Encode and send a tenant's events (`encode`, then `send`); raises KafkaError."""
        await self.send(self.encode(tenant, events, ingested_at=ingested_at, correlation_id=correlation_id))
