"""(a) The floor: raw aiokafka produce → broker → consume → produce → consume on a fresh Tansu broker.

The pass-through runs in its own process, as a service would; the source and the sink share this one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from scrm_bench.infra import bench_stack
from scrm_common.kafka import ensure_topics, make_producer

IN, OUT = "bench.floor.in", "bench.floor.out"
GROUP = "bench-floor"


def _payload(i: int, size: int) -> bytes:
    head = f'{{"i":{i},"type":"payment.succeeded","pad":"'.encode()
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


def passthrough_process(bootstrap: str, n: int, ready: Any, done: Any) -> None:
    """Child process: consume IN in a group, produce every record to OUT (acks=all), commit; stop after n."""
    asyncio.run(_passthrough(bootstrap, n, ready, done))


async def _passthrough(bootstrap: str, n: int, ready: Any, done: Any) -> None:
    producer = await make_producer(bootstrap, client_id="bench-floor")
    consumer = AIOKafkaConsumer(IN, bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=1000, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=100)
        ready.set()
        moved = 0
        while moved < n and not done.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            if not batches:
                continue
            futures = [await producer.send(OUT, key=r.key, value=r.value) for records in batches.values()
                       for r in records]
            await asyncio.gather(*futures)
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
            moved += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()


async def _source_and_sink(bootstrap: str, n: int, size: int) -> dict[str, float]:
    sink = AIOKafkaConsumer(OUT, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                            fetch_max_wait_ms=50, max_poll_records=5000)
    await sink.start()
    producer = await make_producer(bootstrap, client_id="bench-floor-source")
    payloads = [(str(i).encode(), _payload(i, size)) for i in range(n)]
    received = 0
    try:
        started = time.perf_counter()

        async def produce() -> float:
            futures = [await producer.send(IN, key=k, value=v) for k, v in payloads]
            await asyncio.gather(*futures)
            return time.perf_counter() - started

        produce_task = asyncio.create_task(produce())
        deadline = started + max(120.0, n / 500)
        while received < n and time.perf_counter() < deadline:
            batches = await sink.getmany(timeout_ms=200, max_records=5000)
            received += sum(len(r) for r in batches.values())
        elapsed = time.perf_counter() - started
        produce_seconds = await produce_task
    finally:
        await producer.stop()
        await sink.stop()
    return {"received": received, "seconds": elapsed, "produce_seconds": produce_seconds}


def run_floor(root: Path, *, messages: int, size: int, partitions: int = 12) -> dict[str, Any]:
    """Measure the pass-through floor; msgs/s end to end (first produce → last consumed downstream)."""
    with bench_stack(root, postgres=False, partitions=partitions) as stack:
        bootstrap = stack.kafka_bootstrap
        asyncio.run(ensure_topics(bootstrap, partitions=partitions, replication=1, names=(IN, OUT)))
        ctx = multiprocessing.get_context("spawn")
        ready, done = ctx.Event(), ctx.Event()
        child = ctx.Process(target=passthrough_process, args=(bootstrap, messages, ready, done), daemon=True)
        child.start()
        try:
            if not ready.wait(timeout=60):
                raise RuntimeError("the pass-through consumer got no partitions within 60 s")
            result = asyncio.run(_source_and_sink(bootstrap, messages, size))
        finally:
            done.set()
            child.join(timeout=15)
            if child.is_alive():
                child.kill()
                child.join()
    rate = result["received"] / result["seconds"] if result["seconds"] > 0 else 0.0
    return {
        "messages": messages, "payload_bytes": size, "partitions": partitions,
        "received": int(result["received"]), "seconds": round(result["seconds"], 3),
        "produce_seconds": round(result["produce_seconds"], 3),
        "produce_msgs_per_s": round(messages / result["produce_seconds"], 1) if result["produce_seconds"] else None,
        "msgs_per_s": round(rate, 1),
        "complete": result["received"] >= messages,
    }
