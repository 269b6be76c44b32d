"""(b) The trigger-engine alone: K payments onto `scrm.events.v1`, time until K send commands are relayed."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer

from scrm_bench import profile
from scrm_bench.infra import bench_stack, cpu_delta, cpu_snapshot, scrape, start_processes
from scrm_bench.payments import payment
from scrm_bench.stats import counter_value
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import encode_event
from scrm_common.contracts.events import parse_event
from scrm_common.kafka import make_producer

TENANT = "bench"
TARGET_EVENTS_PER_S = 2000.0


def encoded_payments(run: str, first: int, count: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """Valid payments as Kafka records (validated here, off the clock)."""
    now = time.time()
    out = []
    for i in range(first, first + count):
        event = parse_event(payment(run, 10_000_000, i, now))
        out.append(encode_event(TENANT, event, ingested_at=datetime.now(UTC)))
    return out


class CommandCounter:
    """Reads `scrm.send-commands.v1` from the start and counts the distinct commands `ours` picks: it maps a command
    (its JSON object) to what makes it distinct (None: not this run's). By default this run's payments (event id
    `pay-<run>-…`)."""

    def __init__(self, bootstrap: str, run: str,
                 ours: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        self._consumer = AIOKafkaConsumer(topics.SEND_COMMANDS, bootstrap_servers=bootstrap, group_id=None,
                                          auto_offset_reset="earliest", fetch_max_wait_ms=50, max_poll_records=5000)
        prefix = f"pay-{run}-"
        self._ours = ours or (lambda command: e if (e := command.get("event_id", "")).startswith(prefix) else None)
        self.seen: set[str] = set()
        self.records = 0

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def until(self, count: int, timeout: float) -> float | None:
        """Consume until `count` distinct commands were seen; the time then, or None on timeout."""
        deadline = time.perf_counter() + timeout
        while len(self.seen) < count:
            if time.perf_counter() > deadline:
                return None
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for record in records:
                    self.records += 1
                    if (distinct := self._ours(json.loads(record.value))) is not None:
                        self.seen.add(distinct)
        return time.perf_counter()


async def _measure(bootstrap: str, run: str, events: int, metrics_port: int,
                   cpu: Callable[[], dict[str, float]], spy: Callable[[], Callable[[], None]]) -> dict[str, Any]:
    counter = CommandCounter(bootstrap, run)
    await counter.start()
    producer = await make_producer(bootstrap, client_id="bench-loader")
    try:
        # Warm-up: one payment end to end, so group assignment and connections are settled before the clock runs.
        for key, value, headers in encoded_payments(run, 0, 1):
            await (await producer.send(topics.EVENTS, key=key, value=value, headers=headers))
        if await counter.until(1, timeout=120) is None:
            raise RuntimeError("the trigger-engine relayed no command for the warm-up payment within 120 s")
        records = encoded_payments(run, 1, events)
        relayed_before = counter_value(scrape(metrics_port), "scrm_trigger_engine_outbox_relayed_total")
        cpu_before = cpu()
        stop_spy = spy()
        started = time.perf_counter()
        futures = [await producer.send(topics.EVENTS, key=k, value=v, headers=h) for k, v, h in records]
        await asyncio.gather(*futures)
        produced = time.perf_counter() - started
        finished = await counter.until(events + 1, timeout=max(300.0, events / 50))
        cpu_used = cpu_delta(cpu_before, cpu(), time.perf_counter() - started)
        stop_spy()
        relayed_after = counter_value(scrape(metrics_port), "scrm_trigger_engine_outbox_relayed_total")
    finally:
        await producer.stop()
        await counter.stop()
    elapsed = (finished or time.perf_counter()) - started
    done = len(counter.seen) - 1
    return {"events": events, "commands": done, "complete": finished is not None, "seconds": round(elapsed, 3),
            "produce_seconds": round(produced, 3), "events_per_s": round(done / elapsed, 1) if elapsed else 0.0,
            "relayed_total_delta": relayed_after - relayed_before, "command_records_read": counter.records,
            "cpu": cpu_used}


def run_engine(root: Path, *, events: int, env: dict[str, str] | None = None,
               profile_dir: Path | None = None) -> dict[str, Any]:
    """Broker + embedded PostgreSQL + the trigger-engine only; events/s consumed → decided → relayed."""
    run = uuid.uuid4().hex[:6].upper()
    # The bench tenant is the bootstrap tenant: it sends from the bootstrap account, so decisions are sends.
    with bench_stack(root, postgres=True, env={"SCRM_BOOTSTRAP_TENANT": TENANT, **(env or {})}) as stack:
        start_processes(stack, ["trigger-engine"])
        port = stack.config.ports["trigger-engine"]

        def spy() -> Callable[[], None]:
            spies = profile.start(stack, ["trigger-engine"], profile_dir, 600) if profile_dir else []
            return lambda: profile.wait(spies, interrupt=True)

        result = asyncio.run(_measure(stack.kafka_bootstrap, run, events, port, lambda: cpu_snapshot(stack), spy))
        if profile_dir:
            hot = profile.summarise(profile_dir, ["trigger-engine"])
            result["profile"] = {"directory": str(profile_dir), "hot": hot}
        decisions = counter_value(scrape(port), "scrm_trigger_engine_decisions_total")
        settings = {k: v for k, v in stack.service_env().items()
                    if k in ("SCRM_CONSUMER_MAX_RECORDS", "SCRM_TOPIC_PARTITIONS", "SCRM_DATABASE_POOL_SIZE")}
    return {**result, "decisions_total": decisions, "settings": {**settings, **(env or {})},
            "target_events_per_s": TARGET_EVENTS_PER_S}
