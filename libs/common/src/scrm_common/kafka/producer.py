"""Producer set-up (acks=all, idempotent where the broker supports it) and topic creation."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from scrm_common.contracts import topics

log = logging.getLogger(__name__)


async def make_producer(bootstrap: str, *, linger_ms: int = 5, client_id: str = "scrm") -> AIOKafkaProducer:
    """A started producer: idempotent when the broker supports it, otherwise acks=all alone."""
    common = {
        "bootstrap_servers": bootstrap,
        "client_id": client_id,
        "acks": "all",
        "linger_ms": linger_ms,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30_000,
    }
    producer = AIOKafkaProducer(enable_idempotence=True, **common)
    quiet = logging.getLogger("aiokafka.producer.sender")
    previous = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the probe's expected failure is not an error worth logging
    try:
        await producer.start()
        return producer
    except KafkaError as exc:
        # Some Kafka-protocol brokers (Tansu among them) lack InitProducerId; consumers are
        # idempotent by event_id / idempotency key, so acks=all without it stays exactly-once in effect.
        log.info("broker refused an idempotent producer (%s); using acks=all", exc)
        await producer.stop()
    finally:
        quiet.setLevel(previous)
    producer = AIOKafkaProducer(**common)
    await producer.start()
    return producer


async def ensure_topics(
    bootstrap: str, *, partitions: int, replication: int, names: tuple[str, ...] = topics.ALL,
    timeout: float = 30.0,
) -> None:
    """Create the platform's topics when missing; existing ones are left as they are."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="scrm-admin")
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [NewTopic(n, partitions, replication) for n in names if n not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
            return
        except KafkaError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            await admin.close()
