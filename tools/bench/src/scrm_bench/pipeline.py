"""(c) The full pipeline: open-loop HTTP payments into ingest, order confirmations timed at the simulator."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from scrm_bench import profile
from scrm_bench.infra import bench_stack, cpu_delta, cpu_snapshot, scrape, start_processes
from scrm_bench.payments import order_id, order_of_callback, payment
from scrm_bench.schedule import Slot, per_second, scheduled_time, slots
from scrm_bench.stats import bucket_delta, gauges, histogram_buckets, histogram_summary, summarize
from scrm_stack.stack import SERVICES, Stack

SENDER_HISTOGRAM = "scrm_sender_event_to_provider_seconds"
# Per-stage histograms scraped before and after the load, to see where the time goes.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("ingest", "scrm_ingest_publish_duration_seconds", ""),
    ("trigger-engine", "scrm_trigger_engine_event_to_decision_seconds", ""),
    ("trigger-engine", "scrm_trigger_engine_batch_duration_seconds", ""),
    ("sender", "scrm_sender_batch_duration_seconds", 'topic="scrm.send-commands.v1"'),
    ("sender", "scrm_sender_batch_duration_seconds", 'topic="scrm.events.v1"'),
    ("sender", "scrm_sender_provider_call_seconds", ""),
    ("sender", SENDER_HISTOGRAM, ""),
    ("segmenter", "scrm_segmenter_batch_duration_seconds", ""),
    ("reporting", "scrm_reporting_batch_duration_seconds", ""),
)
TARGET_P99_S = 1.0

# The simulator and sender must not be what caps the test (CLOUD-API default is 80 msg/s per number).
PIPELINE_ENV = {
    "SCRM_SIMULATOR_P_FAIL": "0",
    "SCRM_SIMULATOR_P_REPLY": "0",
    "SCRM_SIMULATOR_P_SERVER_ERROR": "0",
    "SCRM_SIMULATOR_MPS": "100000",
    "SCRM_BOOTSTRAP_THROUGHPUT_PER_SECOND": "1000",
}


@dataclass
class LoadResult:
    scheduled: dict[str, float] = field(default_factory=dict)  # order id → scheduled send time (epoch)
    accepted: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)  # order id → last error
    dispatch_lag: list[float] = field(default_factory=list)  # how late each request left vs its slot
    request_seconds: list[float] = field(default_factory=list)
    retries: int = 0


@dataclass
class Received:
    at: dict[str, float] = field(default_factory=dict)  # order id → simulator received_at (epoch)
    duplicates: int = 0
    last_seq: int = 0


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def _post_slot(client: httpx.AsyncClient, url: str, key: str, run: str, slot: Slot, due: float,
                     result: LoadResult, phone_offset: int) -> None:
    events = [payment(run, phone_offset, i, due) for i in range(slot.first, slot.first + slot.size)]
    orders = [order_id(run, i) for i in range(slot.first, slot.first + slot.size)]
    for order in orders:
        result.scheduled[order] = due
    body: Any = events[0] if len(events) == 1 else {"events": events}
    headers = {"Authorization": f"Bearer {key}"}
    error = ""
    for attempt in range(1, 6):
        started = time.perf_counter()
        try:
            resp = await client.post(url, json=body, headers=headers)
            result.request_seconds.append(time.perf_counter() - started)
            if resp.status_code == 202:
                result.accepted.update(orders)
                return
            error = f"HTTP {resp.status_code}: {resp.text[:200]}"
            if resp.status_code not in (429, 500, 502, 503, 504):
                break
            delay = float(resp.headers.get("retry-after") or 0.1 * attempt)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            delay = 0.1 * attempt
        result.retries += 1
        await asyncio.sleep(min(delay, 2.0))
    for order in orders:
        result.failed[order] = error


async def open_loop(client: httpx.AsyncClient, url: str, key: str, run: str, *, rate: float, duration: float,
                    batch: int, start: float, phone_offset: int = 0) -> LoadResult:
    """Send every slot at its wall-clock time without waiting for answers (no coordinated omission)."""
    result = LoadResult()
    tasks = []
    for slot in slots(rate, duration, batch):
        due = scheduled_time(start, slot)
        wait = due - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        result.dispatch_lag.append(max(0.0, time.time() - due))
        tasks.append(asyncio.create_task(_post_slot(client, url, key, run, slot, due, result, phone_offset)))
    await asyncio.gather(*tasks)
    return result


async def watch_simulator(client: httpx.AsyncClient, base: str, run: str, received: Received,
                          stop: asyncio.Event, *, interval: float = 0.25) -> None:
    """Poll `/_sim/messages?since_seq=` and note when each of this run's orders reached the simulator."""
    while True:
        try:
            resp = await client.get(f"{base}/_sim/messages", params={"since_seq": received.last_seq, "limit": 5000})
            body = resp.json()
        except (httpx.HTTPError, ValueError):
            body = None
        messages = body["messages"] if isinstance(body, dict) else []
        for message in messages:
            received.last_seq = max(received.last_seq, int(message["seq"]))
            order = order_of_callback(message.get("biz_opaque_callback_data"), run)
            if order is None:
                continue
            if order in received.at:
                received.duplicates += 1
            else:
                received.at[order] = _epoch(message["received_at"])
        if len(messages) >= 5000:
            continue
        if stop.is_set():
            return
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


def _stage_buckets(texts: dict[str, str]) -> dict[str, dict[float, float]]:
    out = {}
    for proc, name, labels in STAGES:
        key = f"{proc}: {name}" + (f"{{{labels}}}" if labels else "")
        out[key] = histogram_buckets(texts.get(proc, ""), name, labels=labels)
    return out


def _scrape_all(ports: dict[str, int]) -> dict[str, str]:
    return {name: scrape(ports[name]) for name in (*SERVICES, "simulator")}


async def sample_lag(client: httpx.AsyncClient, ports: dict[str, int], peaks: dict[str, float],
                     stop: asyncio.Event, *, interval: float = 1.0) -> None:
    """Track the peak consumer lag and outbox backlog of every service while the load runs."""
    while not stop.is_set():
        for name in SERVICES:
            try:
                text = (await client.get(f"http://127.0.0.1:{ports[name]}/metrics")).text
            except httpx.HTTPError:
                continue
            backlog = {**gauges(text, "_consumer_lag_records"), **gauges(text, "_outbox_batch_records")}
            for key, value in backlog.items():
                peaks[key] = max(peaks.get(key, 0.0), value)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


async def _run_load(stack: Stack, *, rate: float, duration: float, batch: int, drain: float,
                    profile_dir: Path | None) -> dict[str, Any]:
    ports = stack.config.ports
    ingest = f"http://127.0.0.1:{ports['ingest']}/v1/events"
    sim = f"http://127.0.0.1:{ports['simulator']}"
    key = stack.secrets["SCRM_BOOTSTRAP_API_KEY"]
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), limits=limits) as client:
        # Warm-up: a few orders end to end, so every consumer group is assigned before the clock runs.
        warm_run = "W" + uuid.uuid4().hex[:5].upper()
        warm = await open_loop(client, ingest, key, warm_run, rate=20, duration=1, batch=1, start=time.time())
        if warm.failed:
            raise RuntimeError(f"warm-up payments refused: {next(iter(warm.failed.values()))}")
        warm_seen = Received()
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_simulator(client, sim, warm_run, warm_seen, stop))
        deadline = time.monotonic() + 120
        while len(warm_seen.at) < len(warm.accepted) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stop.set()
        await watcher
        if len(warm_seen.at) < len(warm.accepted):
            raise RuntimeError(f"warm-up: only {len(warm_seen.at)}/{len(warm.accepted)} confirmations reached "
                               "the simulator within 120 s")

        run = uuid.uuid4().hex[:6].upper()
        received = Received(last_seq=warm_seen.last_seq)
        before_stages = _stage_buckets(_scrape_all(ports))
        cpu_before = cpu_snapshot(stack)
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_simulator(client, sim, run, received, stop))
        peaks: dict[str, float] = {}
        lag_task = asyncio.create_task(sample_lag(client, ports, peaks, stop))
        start = time.time() + 0.5
        spies = profile.start(stack, [*SERVICES, "simulator"], profile_dir, duration) if profile_dir else []
        load = await open_loop(client, ingest, key, run, rate=rate, duration=duration, batch=batch, start=start,
                               phone_offset=1_000)
        sent_done = time.time()
        cpu_load = cpu_delta(cpu_before, cpu_snapshot(stack), sent_done - start)
        # Drain: until every accepted order arrived, or no progress for `drain` seconds.
        progress_at, seen = time.monotonic(), -1
        while len(received.at) < len(load.accepted) and time.monotonic() - progress_at < drain:
            if len(received.at) != seen:
                seen, progress_at = len(received.at), time.monotonic()
            await asyncio.sleep(0.25)
        stop.set()
        await watcher
        await lag_task
        profile.wait(spies)
        after_stages = _stage_buckets(_scrape_all(ports))
        sim_stats = {}
        try:
            sim_stats = (await client.get(f"{sim}/_sim/stats")).json()
        except (httpx.HTTPError, ValueError):
            pass

    latencies = [received.at[o] - load.scheduled[o] for o in received.at if o in load.scheduled]
    total = len(load.scheduled)
    in_window = [t for o, t in received.at.items() if t <= start + duration]
    last = max(received.at.values(), default=start)
    per_sec = per_second(sorted(received.at.values()), start, int(duration))
    middle = per_sec[5:-5] if len(per_sec) > 10 else per_sec
    return {
        "rate": rate, "duration": duration, "batch": batch, "offered": total,
        "accepted": len(load.accepted), "refused": len(load.failed),
        "refusal_example": next(iter(load.failed.values()), None), "http_retries": load.retries,
        "received": len(received.at), "duplicates_at_simulator": received.duplicates,
        "missing": len(load.accepted) - len(received.at),
        "offered_rate_achieved": round(total / max(1e-9, sent_done - start), 1),
        "dispatch_lag_s": summarize(load.dispatch_lag),
        "ingest_request_s": summarize(load.request_seconds),
        "latency_s": summarize(latencies),
        "throughput_in_window_per_s": round(len(in_window) / duration, 1),
        "throughput_overall_per_s": round(len(received.at) / max(1e-9, last - start), 1),
        "received_per_second_middle": {"min": min(middle, default=0), "max": max(middle, default=0)},
        "sender_event_to_provider_s": histogram_summary(bucket_delta(
            before_stages[f"sender: {SENDER_HISTOGRAM}"], after_stages[f"sender: {SENDER_HISTOGRAM}"])),
        "stages_s": {k: histogram_summary(bucket_delta(before_stages[k], v)) for k, v in after_stages.items()},
        "peak_backlog": {k: v for k, v in sorted(peaks.items()) if v > 0},
        "cpu_during_load": cpu_load,
        "simulator_stats": {k: sim_stats.get(k) for k in ("accepted", "rejected", "statuses") if k in sim_stats},
    }


def run_pipeline(root: Path, *, rate: float, duration: float, batch: int, drain: float = 30.0,
                 profile_dir: Path | None = None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """All five services and the simulator (no demo shop), open-loop load at `rate` for `duration` seconds.

    With `profile_dir`, py-spy samples every process during the load (this slows them; diagnosis only).
    """
    settings = {**PIPELINE_ENV, **(env or {})}
    with bench_stack(root, postgres=True, env=settings) as stack:
        start_processes(stack, [*SERVICES, "simulator"])
        result = asyncio.run(_run_load(stack, rate=rate, duration=duration, batch=batch, drain=drain,
                                       profile_dir=profile_dir))
        if profile_dir:
            result["profile"] = {"directory": str(profile_dir),
                                 "hot": profile.summarise(profile_dir, [*SERVICES, "simulator"])}
        dead = [p.name for p in stack.dead()]
    p99 = result["latency_s"]["p99"]
    complete = result["received"] >= 0.999 * result["offered"]
    met = bool(complete and p99 is not None and p99 <= TARGET_P99_S
               and result["throughput_in_window_per_s"] >= 0.97 * rate)
    return {**result, "settings": settings, "processes_died": dead, "target_met": met,
            "target_p99_s": TARGET_P99_S}
