"""Helpers for integration tests against a real Tansu broker (one per test module)."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from scrm_common.contracts import topics
from scrm_common.kafka import make_consumer
from scrm_stack.stack import Stack, StackConfig, free_port


def start_broker(root: Path) -> Stack:
    """A Tansu broker (memory storage) on a free port, started by the stack runner itself."""
    config = StackConfig.from_env(root, env={})
    config.broker_port = free_port()
    stack = Stack(config)
    try:
        stack.start_broker()
    except BaseException:
        stack.stop_all()
        raise
    return stack


def group_consumer(bootstrap: str, *, group_id: str, topic: str, max_records: int) -> AIOKafkaConsumer:
    """`make_consumer` as the services use it, with shorter group timeouts so the tests stay fast.

    Tansu answers a JoinGroup only after about half the session timeout (10 s in production -> ~5 s per
    join), and aiokafka sends no LeaveGroup from generation 0 (Tansu's first generation), so the next
    member of a group waits for the first one's session to expire (~18 s in production). Only those
    timings change here; everything else is as the services configure it.
    """
    consumer = make_consumer(bootstrap, group_id=group_id, topic=topic, max_records=max_records)
    for name in ("_session_timeout_ms", "_heartbeat_interval_ms", "_rebalance_timeout_ms"):
        assert hasattr(consumer, name), f"aiokafka no longer keeps {name}; update group_consumer"
    consumer._session_timeout_ms = 2_000  # noqa: SLF001 - see docstring
    consumer._heartbeat_interval_ms = 300  # noqa: SLF001
    consumer._rebalance_timeout_ms = 1_000  # noqa: SLF001
    return consumer


async def eventually(predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy, or fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


async def read_topic(bootstrap: str, topic: str, *, partitions: int, timeout: float = 15.0) -> list[ConsumerRecord]:
    """Every record currently in `topic`, read without a group, in (partition, offset) order.

    Reads up to the high watermarks the fetches report: Tansu 0.6's ListOffsets(latest) answers the base
    offset of the last batch + 1, so `end_offsets` undercounts whenever that batch held several records.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while True:
            for batch in (await consumer.getmany(timeout_ms=100)).values():
                records.extend(batch)
            highs = {tp.partition: consumer.highwater(tp) for tp in tps}
            positions = {tp.partition: await consumer.position(tp) for tp in tps}
            if all(highs[p] is not None and positions[p] >= highs[p] for p in highs):
                return sorted(records, key=lambda r: (r.partition, r.offset))
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} to {highs} within {timeout}s (at {positions})")
    finally:
        await consumer.stop()


def dead_letter_meta(record: ConsumerRecord) -> dict[str, Any]:
    """The JSON of a dead letter's `dead_letter` header."""
    values = [v for k, v in record.headers or () if k == "dead_letter"]
    assert len(values) == 1, f"expected one dead_letter header, got {record.headers!r}"
    return json.loads(values[0])


async def dead_letters_from(bootstrap: str, source_topic: str, *, partitions: int) -> list[ConsumerRecord]:
    """Dead letters whose original record came from `source_topic`."""
    records = await read_topic(bootstrap, topics.DEAD_LETTER, partitions=partitions)
    return [r for r in records if dead_letter_meta(r)["topic"] == source_topic]
