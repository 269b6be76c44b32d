"""Wiring: builds the segmenter's adapters from Settings; tests pass their own pieces instead."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from scrm_common.clock import Clock, SystemClock
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord, decoder_for
from scrm_common.http import KeyIntrospection
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, batch_consumer
from scrm_common.observability.metrics import new_registry
from scrm_common.service import Infrastructure
from segmenter.adapters.db import PostgresContactStore
from segmenter.adapters.http import create_app
from segmenter.config import Settings
from segmenter.domain.roster import EVENTS_READ
from segmenter.handlers import ApplyEvents, RefreshTiers, SegmenterMetrics

SERVICE = "segmenter"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class Segmenter:
    """The running parts of one segmenter instance."""

    app: FastAPI
    consumer: BatchConsumer[EventRecord]
    refresher: RefreshTiers
    keys: KeyIntrospection

    async def aclose(self) -> None:
        """Release connections."""
        await self.keys.aclose()


async def build(settings: Settings, infra: Infrastructure, *, clock: Clock | None = None) -> Segmenter:
    """Wire the consumer, refresher and the HTTP app onto the service's infrastructure."""
    clock = clock or SystemClock()
    engine, producer = infra.engine, infra.producer
    registry = new_registry()
    metrics = SegmenterMetrics(registry)
    store = PostgresContactStore(engine)
    policy, currency = settings.segment_policy, settings.default_currency
    consumer = batch_consumer(settings, group_id=SERVICE, topic=topics.EVENTS, producer=producer,
                              decode=decoder_for(EVENTS_READ),
                              handle=ApplyEvents(store=store, clock=clock, policy=policy, metrics=metrics,
                                                 currency=currency),
                              metrics=ConsumerMetrics(SERVICE, registry))
    refresher = RefreshTiers(store=store, clock=clock, policy=policy, metrics=metrics,
                             interval_seconds=settings.segmenter_refresh_interval_seconds,
                             batch=settings.segmenter_refresh_batch, currency=currency)
    keys = KeyIntrospection(settings.ingest_url, internal_token=settings.internal_token,
                            ttl_seconds=settings.key_cache_seconds)

    async def ready() -> bool:
        if not consumer.ready:
            return False
        try:
            async with asyncio.timeout(2.0):
                return await store.ping()
        except TimeoutError:
            return False

    app = create_app(store=store, keys=keys, clock=clock, policy=policy, registry=registry,
                     ready=ready, currency=currency)
    return Segmenter(app=app, consumer=consumer, refresher=refresher, keys=keys)
