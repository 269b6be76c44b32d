"""ensure_topics against a real (fresh) broker: creates what is missing, leaves what exists."""

from __future__ import annotations

import time

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from scrm_common.contracts import topics
from scrm_common.kafka import ensure_topics
from scrm_stack.stack import free_port


async def partition_counts(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="it-admin")
    await admin.start()
    try:
        names = await admin.list_topics()
        described = await admin.describe_topics(list(names)) if names else []
        return {t["topic"]: len(t["partitions"]) for t in described}
    finally:
        await admin.close()


async def test_ensure_topics_creates_the_three_topics_and_is_idempotent(broker: str) -> None:
    assert not set(topics.ALL) & set(await partition_counts(broker)), "the module's broker starts empty"

    await ensure_topics(broker, partitions=3, replication=1)
    assert {t: n for t, n in (await partition_counts(broker)).items() if t in topics.ALL} == dict.fromkeys(topics.ALL, 3)

    # Again, even asking for more partitions: no error, existing topics are left as they are.
    await ensure_topics(broker, partitions=3, replication=1)
    await ensure_topics(broker, partitions=5, replication=1)
    assert {t: n for t, n in (await partition_counts(broker)).items() if t in topics.ALL} == dict.fromkeys(topics.ALL, 3)


async def test_ensure_topics_creates_only_the_missing_names(broker: str) -> None:
    await ensure_topics(broker, partitions=3, replication=1)
    await ensure_topics(broker, partitions=2, replication=1, names=(topics.EVENTS, "it.extra"))
    counts = await partition_counts(broker)
    assert counts["it.extra"] == 2
    assert counts[topics.EVENTS] == 3


async def test_ensure_topics_gives_up_after_its_timeout_when_no_broker_answers() -> None:
    started = time.monotonic()
    with pytest.raises(KafkaError):
        await ensure_topics(f"127.0.0.1:{free_port()}", partitions=1, replication=1, timeout=1.0)
    assert time.monotonic() - started < 15
