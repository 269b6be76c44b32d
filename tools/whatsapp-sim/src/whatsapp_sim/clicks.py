"""Simulated customers click some of the links they receive (issue 9: `make run` shows clicks within minutes).

A message the simulator accepts is clicked with probability SCRM_SIMULATOR_CLICK_RATE (default 0: never);
its first short link (`…/l/<code>`) or resume link (`…/r/<token>`) is fetched with a GET, redirects not
followed, after a random delay of SCRM_SIMULATOR_CLICK_DELAY_S seconds. A link written with
SCRM_PUBLIC_BASE_URL goes to SCRM_INGEST_URL instead when the two differ.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from whatsapp_sim.domain.links import rewrite, short_links, texts_of
from whatsapp_sim.domain.validation import AcceptedMessage
from whatsapp_sim.metrics import SimMetrics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ClickStats:
    """Clicks planned and their outcomes, for `/_sim/stats`."""

    planned: int = 0
    redirected: int = 0
    answered: int = 0  # any other HTTP answer (400 tampered, 404 unknown code, 410 expired, ...)
    failed: int = 0  # no answer: connection refused, timeout


class Clicker:
    """Plans clicks on accepted messages and performs them from its `run` loop."""

    def __init__(
        self,
        *,
        rate: float,
        delay_s: tuple[float, float],
        public_base_url: str,
        ingest_url: str,
        rng: random.Random,
        metrics: SimMetrics,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 5.0,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self._delay_s = delay_s
        self._public = public_base_url
        self._ingest = ingest_url
        self._rng = rng
        self._metrics = metrics
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._mono = mono
        self._due: list[tuple[float, int, str]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self.stats = ClickStats()

    def links_of(self, message: AcceptedMessage) -> list[str]:
        """The clickable links of a message (template parameters, or a text message's body), each rewritten to
        the URL the click GETs."""
        if message.template is not None:
            texts = texts_of(message.template.parameters, message.template.header_parameters,
                             message.template.button_parameters)
        else:
            texts = [message.text] if message.text else []
        return [rewrite(url, self._public, self._ingest) for url in short_links(texts)]

    def consider(self, message: AcceptedMessage) -> str | None:
        """Maybe plan a click on one of the message's links; the URL planned, or None. Never blocks."""
        if self.rate <= 0:
            return None
        links = self.links_of(message)
        if not links or self._rng.random() >= self.rate:
            return None
        url = self._rng.choice(links)
        low, high = self._delay_s
        heapq.heappush(self._due, (self._mono() + self._rng.uniform(low, high), next(self._order), url))
        self.stats.planned += 1
        self._metrics.link_clicks.labels("planned").inc()
        self._wake.set()
        return url

    @property
    def pending(self) -> int:
        """Clicks planned and not yet made."""
        return len(self._due)

    def clear(self) -> None:
        """Forget planned clicks and counters."""
        self._due.clear()
        self.stats = ClickStats()

    async def click(self, url: str) -> int | None:
        """GET `url` without following redirects; the HTTP status, or None when there was no answer."""
        try:
            response = await self._client.get(url, follow_redirects=False)
        except Exception as exc:  # connection refused, timeout, bad URL: counted, never raised
            self.stats.failed += 1
            self._metrics.link_clicks.labels("failed").inc()
            log.info("click on %s failed: %s", url, exc)
            return None
        outcome = "redirected" if 300 <= response.status_code < 400 else "answered"
        if outcome == "redirected":
            self.stats.redirected += 1
        else:
            self.stats.answered += 1
        self._metrics.link_clicks.labels(outcome).inc()
        return response.status_code

    async def run(self, stop: asyncio.Event) -> None:
        """Make the planned clicks when they are due, until `stop` is set."""
        try:
            while not stop.is_set():
                self._wake.clear()
                now = self._mono()
                while self._due and self._due[0][0] <= now:
                    _, _, url = heapq.heappop(self._due)
                    await self.click(url)
                timeout = self._due[0][0] - now if self._due else None
                waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                try:
                    await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for waiter in waiters:
                        waiter.cancel()
        finally:
            if self._owns_client:
                await self._client.aclose()
