"""What every service opens at start and closes at exit: its schema (migrated), the topics, a producer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.db import make_engine, migrate
from scrm_common.kafka import ensure_topics, make_producer
from scrm_common.settings import CommonSettings


@dataclass(frozen=True, slots=True)
class Infrastructure:
    """A service's database engine (confined to its schema) and its Kafka producer."""

    engine: AsyncEngine
    producer: AIOKafkaProducer


@asynccontextmanager
async def infrastructure(settings: CommonSettings, *, service: str, schema: str,
                         migrations: Path) -> AsyncIterator[Infrastructure]:
    """Migrate the service's schema, make sure the topics exist, start a producer; release all on exit."""
    engine = make_engine(settings.database_url, schema=schema, pool_size=settings.database_pool_size)
    try:
        await migrate(engine, schema=schema, directory=migrations)
        await ensure_topics(settings.kafka_bootstrap, partitions=settings.topic_partitions,
                            replication=settings.topic_replication)
        producer = await make_producer(settings.kafka_bootstrap, linger_ms=settings.producer_linger_ms,
                                       client_id=service)
        try:
            yield Infrastructure(engine, producer)
        finally:
            await producer.stop()
    finally:
        await engine.dispose()
