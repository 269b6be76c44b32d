"""Posting events to ingest: batches, 429 Retry-After honoured, 5xx and network errors retried with backoff."""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from scrm_common.backoff import Backoff

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[bool]]  # sleeps; returns False when told to stop meanwhile


@dataclass
class PostStats:
    posted: int = 0
    dropped: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    by_type: Counter[str] = field(default_factory=Counter)


def retry_after(value: str | None, default: float = 1.0, cap: float = 60.0) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), bounded to [0, cap]."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return default
    return min(cap, max(0.0, seconds))


class Poster:
    """Sends events to `POST /v1/events` in batches; never gives up on 429, gives up on 5xx after `max_tries`."""

    def __init__(self, client: httpx.AsyncClient, *, url: str, api_key: str, sleep: Sleep, batch: int = 100,
                 max_tries: int = 8, backoff: Backoff | None = None, rng: random.Random | None = None) -> None:
        self._client = client
        self._url = url.rstrip("/") + "/v1/events"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._sleep = sleep
        self._batch = batch
        self._max_tries = max_tries
        self._backoff = backoff or Backoff(0.5, 10.0)
        self._rng = rng or random.Random()
        self.stats = PostStats()

    async def post(self, events: Sequence[dict[str, Any]]) -> int:
        """Post all `events` in batches; return how many ingest accepted."""
        accepted = 0
        for start in range(0, len(events), self._batch):
            chunk = events[start:start + self._batch]
            ok = await self._post_batch(chunk)
            if ok is None:
                return accepted  # stopping
            if ok:
                accepted += len(chunk)
                self.stats.posted += len(chunk)
                self.stats.by_type.update(e["type"] for e in chunk)
            else:
                self.stats.dropped += len(chunk)
        return accepted

    async def _post_batch(self, chunk: Sequence[dict[str, Any]]) -> bool | None:
        """True when accepted, False when dropped, None when told to stop while waiting."""
        body: Any = chunk[0] if len(chunk) == 1 else {"events": list(chunk)}
        failures = 0
        while True:
            self.stats.requests += 1
            try:
                resp = await self._client.post(self._url, json=body, headers=self._headers)
            except httpx.HTTPError as exc:
                failures += 1
                reason = f"{type(exc).__name__}: {exc}"
                delay = self._backoff.delay(failures, self._rng)
            else:
                if resp.status_code == 202:
                    return True
                if resp.status_code == 429:
                    self.stats.throttled += 1
                    delay = retry_after(resp.headers.get("retry-after"))
                    log.info("ingest throttles us; waiting %.1fs", delay)
                    if not await self._sleep(delay):
                        return None
                    continue
                if resp.status_code < 500:
                    # 401, 413, 422: retrying cannot help; say why and move on.
                    log.error("ingest refused %d event(s) with %d: %s", len(chunk), resp.status_code,
                              resp.text[:500])
                    return False
                failures += 1
                reason = f"HTTP {resp.status_code}"
                delay = max(self._backoff.delay(failures, self._rng), retry_after(resp.headers.get("retry-after"), 0))
            if failures >= self._max_tries:
                log.error("giving up on %d event(s) after %d tries: %s", len(chunk), failures, reason)
                return False
            self.stats.retries += 1
            log.warning("posting failed (%s), retry %d in %.2fs", reason, failures, delay)
            if not await self._sleep(delay):
                return None
