"""Wiring: builds the segmenter's adapters from Settings; tests pass their own pieces instead."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import Clock, SystemClock
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord, decode_record
from scrm_common.db import make_engine, migrate
from scrm_common.http import KeyIntrospection
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, batch_consumer, ensure_topics, make_producer
from scrm_common.observability.metrics import new_registry
from segmenter.adapters.db import SCHEMA, PostgresContactStore
from segmenter.adapters.http import create_app
from segmenter.config import Settings
from segmenter.handlers import ApplyEvents, RefreshTiers, SegmenterMetrics

SERVICE = "segmenter"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class Segmenter:
    """The running parts of one segmenter instance."""

    app: FastAPI
    consumer: BatchConsumer[EventRecord]
    refresher: RefreshTiers
    engine: AsyncEngine
    producer: AIOKafkaProducer
    keys: KeyIntrospection

    async def aclose(self) -> None:
        """Release connections."""
        await self.keys.aclose()
        await self.producer.stop()
        await self.engine.dispose()


async def build(settings: Settings, *, clock: Clock | None = None) -> Segmenter:
    """Migrate the schema, make sure the topics exist and wire consumer, refresher and HTTP app."""
    clock = clock or SystemClock()
    engine = make_engine(settings.database_url, schema=SCHEMA, pool_size=settings.database_pool_size)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    await ensure_topics(settings.kafka_bootstrap, partitions=settings.topic_partitions,
                        replication=settings.topic_replication)
    producer = await make_producer(settings.kafka_bootstrap, linger_ms=settings.producer_linger_ms,
                                   client_id=SERVICE)
    registry = new_registry()
    metrics = SegmenterMetrics(registry)
    store = PostgresContactStore(engine)
    policy = settings.segment_policy
    consumer = batch_consumer(settings, group_id=SERVICE, topic=topics.EVENTS, producer=producer,
                              decode=decode_record,
                              handle=ApplyEvents(store=store, clock=clock, policy=policy, metrics=metrics),
                              metrics=ConsumerMetrics(SERVICE, registry))
    refresher = RefreshTiers(store=store, clock=clock, policy=policy, metrics=metrics,
                             interval_seconds=settings.segmenter_refresh_interval_seconds,
                             batch=settings.segmenter_refresh_batch)
    keys = KeyIntrospection(settings.ingest_url)

    async def ready() -> bool:
        if not consumer.ready:
            return False
        try:
            async with asyncio.timeout(2.0):
                return await store.ping()
        except TimeoutError:
            return False

    app = create_app(store=store, principal=keys.principal, clock=clock, policy=policy, registry=registry,
                     ready=ready)
    return Segmenter(app=app, consumer=consumer, refresher=refresher, engine=engine, producer=producer, keys=keys)
