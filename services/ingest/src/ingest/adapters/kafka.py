"""Publishing events to `scrm.events.v1`: answered only after the broker acknowledged all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from aiokafka import AIOKafkaProducer

from scrm_common.contracts import topics
from scrm_common.contracts.envelope import encode_event
from scrm_common.contracts.events import Event


class EventPublisher:
    """Sends a batch of a tenant's events and waits for every acknowledgement (acks=all)."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer

    async def publish(
        self, tenant: str, events: Sequence[Event], *, ingested_at: datetime, correlation_id: str
    ) -> None:
        futures = []
        for event in events:
            key, value, headers = encode_event(tenant, event, ingested_at=ingested_at,
                                               correlation_id=correlation_id)
            futures.append(await self._producer.send(topics.EVENTS, key=key, value=value, headers=headers))
        await asyncio.gather(*futures)
