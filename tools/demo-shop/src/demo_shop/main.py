"""`demo-shop` / `python -m demo_shop.main`: posts realistic shop traffic to ingest until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import httpx

from demo_shop.config import Settings
from demo_shop.generator import DemoShop
from demo_shop.poster import Poster
from scrm_common.clock import Clock, SystemClock
from scrm_common.observability.logging import setup_logging

log = logging.getLogger("demo_shop")

TICK_SECONDS = 0.2
MAX_BACKLOG_SECONDS = 10.0  # after a long stall, catch up at most this much traffic


def due_count(budget: float, rate: float, elapsed: float) -> tuple[int, float]:
    """Whole events due after `elapsed` seconds at `rate`, and the fractional remainder carried over."""
    budget = min(budget + rate * max(0.0, elapsed), max(1.0, rate * MAX_BACKLOG_SECONDS))
    whole = int(budget)
    return whole, budget - whole


async def run_shop(settings: Settings, stop: asyncio.Event, *, clock: Clock | None = None,
                   transport: httpx.AsyncBaseTransport | None = None) -> Poster:
    """Generate and post at `settings.demo_rate` until `stop` is set; return the poster (and its stats)."""
    clock = clock or SystemClock()
    shop = DemoShop(settings.demo_seed, account_id=settings.bootstrap_phone_number_id)

    async def sleep(seconds: float) -> bool:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        except TimeoutError:
            return True
        return False

    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0), transport=transport) as client:
        poster = Poster(client, url=settings.ingest_url, api_key=settings.bootstrap_api_key, sleep=sleep,
                        batch=settings.demo_batch)
        log.info(f"posting ~{settings.demo_rate:g} events/s to {settings.ingest_url} (seed {settings.demo_seed})")
        last = time.monotonic()
        report_at = last + settings.demo_report_seconds
        reported_posted, reported_at = 0, last
        budget = 0.0
        while not stop.is_set():
            now_mono = time.monotonic()
            count, budget = due_count(budget, settings.demo_rate, now_mono - last)
            last = now_mono
            if count:
                await poster.post(shop.emit(clock.now(), count))
            if time.monotonic() >= report_at:
                stats = poster.stats
                span = time.monotonic() - reported_at
                rate = (stats.posted - reported_posted) / span if span > 0 else 0.0
                log.info(f"{stats.posted} events posted ({rate:.1f}/s), {stats.dropped} dropped, "
                     f"{stats.retries} retries, {stats.throttled} throttled, {shop.pending} follow-ups pending | "
                     + " ".join(f"{k}={v}" for k, v in sorted(stats.by_type.items())))
                reported_posted, reported_at = stats.posted, time.monotonic()
                report_at = reported_at + settings.demo_report_seconds
            await sleep(TICK_SECONDS)
        return poster


async def main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    poster = await run_shop(settings, stop)
    log.info(f"stopped after {poster.stats.posted} events posted, {poster.stats.dropped} dropped")


def run() -> None:
    settings = Settings()
    setup_logging("demo-shop", settings.log_level)  # JSON lines on stderr, like the services' logs
    asyncio.run(main(settings))


if __name__ == "__main__":
    run()
