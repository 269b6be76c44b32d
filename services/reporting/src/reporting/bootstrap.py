"""Wiring: builds reporting's adapters from Settings; tests pass their own pieces instead."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from reporting.adapters.db import PostgresReportStore
from reporting.adapters.dead_letters import PostgresDeadLetterStore
from reporting.adapters.dead_letters_http import dead_letters_router
from reporting.adapters.http import create_app
from reporting.config import Settings
from reporting.dead_letters import DeadLetterMetrics, StoreDeadLetters, decode_dead_letter
from reporting.domain.dead_letters import STORE_GROUP, NewDeadLetter
from reporting.domain.reads import EVENTS_READ
from reporting.handlers import ApplyEvents, ReportingMetrics
from scrm_common.clock import Clock, SystemClock
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord, decoder_for
from scrm_common.http import KeyIntrospection
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, batch_consumer
from scrm_common.observability.metrics import new_registry
from scrm_common.service import Infrastructure

SERVICE = "reporting"
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass
class Reporting:
    """The running parts of one reporting instance."""

    app: FastAPI
    consumer: BatchConsumer[EventRecord]
    keys: KeyIntrospection
    dead_letters: BatchConsumer[NewDeadLetter]

    async def aclose(self) -> None:
        """Release connections."""
        await self.keys.aclose()


async def build(settings: Settings, infra: Infrastructure, *, clock: Clock | None = None) -> Reporting:
    """Wire the consumer and the HTTP app onto the service's infrastructure."""
    clock = clock or SystemClock()
    engine, producer = infra.engine, infra.producer
    registry = new_registry()
    store = PostgresReportStore(engine)
    policy = settings.report_policy
    consumer_metrics = ConsumerMetrics(SERVICE, registry)
    consumer = batch_consumer(settings, group_id=SERVICE, topic=topics.EVENTS, producer=producer,
                              decode=decoder_for(EVENTS_READ),
                              handle=ApplyEvents(store=store, policy=policy, metrics=ReportingMetrics(registry)),
                              metrics=consumer_metrics)
    dead_letter_store, dead_letter_metrics = PostgresDeadLetterStore(engine), DeadLetterMetrics(registry)
    dead_letters = batch_consumer(settings, group_id=STORE_GROUP, topic=topics.DEAD_LETTER, producer=producer,
                                  decode=decode_dead_letter,
                                  handle=StoreDeadLetters(store=dead_letter_store, metrics=dead_letter_metrics),
                                  metrics=consumer_metrics)
    keys = KeyIntrospection(settings.ingest_url, internal_token=settings.internal_token,
                            ttl_seconds=settings.key_cache_seconds)

    async def ready() -> bool:
        if not consumer.ready or not dead_letters.ready:
            return False
        try:
            async with asyncio.timeout(2.0):
                return await store.ping()
        except TimeoutError:
            return False

    app = create_app(store=store, keys=keys, clock=clock, policy=policy, registry=registry,
                     ready=ready)
    app.include_router(dead_letters_router(store=dead_letter_store, keys=keys, producer=producer,
                                           clock=clock, metrics=dead_letter_metrics))
    return Reporting(app=app, consumer=consumer, keys=keys, dead_letters=dead_letters)
