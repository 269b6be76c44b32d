"""Meta-shaped webhook envelopes, signed with the app secret, delivered asynchronously with retries."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from whatsapp_sim.metrics import SimMetrics

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256(secret, body)>` over the exact bytes."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the valid signature of `body` (constant-time)."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON, as the bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def envelope(waba_id: str, metadata: Mapping[str, str] | None, value: Mapping[str, Any],
             field_name: str = "messages", time_s: int | None = None) -> dict[str, Any]:
    """`{"object":"whatsapp_business_account","entry":[{"id","changes":[{"field","value"}]}]}`.

    A number's change carries `messaging_product` and `metadata`; a WABA's own change (`metadata` None: a
    template status update) carries the value as it is, and the entry its `time` (CLOUD-API.md §5.5)."""
    inner = dict(value) if metadata is None else {"messaging_product": "whatsapp", "metadata": dict(metadata), **value}
    entry: dict[str, Any] = {"id": waba_id, "changes": [{"field": field_name, "value": inner}]}
    if time_s is not None:
        entry["time"] = time_s
    return {"object": "whatsapp_business_account", "entry": [entry]}


def template_status_value(*, event: str, template_id: str, name: str, language: str, category: str,
                          reason: str | None) -> dict[str, Any]:
    """`value` of a `message_template_status_update` webhook (CLOUD-API.md §5.5)."""
    return {"event": event, "message_template_id": int(template_id), "message_template_name": name,
            "message_template_language": language, "reason": reason or "NONE",
            "message_template_category": category.upper()}


def status_object(*, wamid: str, status: str, timestamp: int, recipient_id: str,
                  biz_opaque_callback_data: str | None = None, pricing: Mapping[str, Any] | None = None,
                  conversation: Mapping[str, Any] | None = None,
                  errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One entry of `value.statuses[]` (timestamp as a string of unix seconds)."""
    out: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(timestamp),
                           "recipient_id": recipient_id}
    if biz_opaque_callback_data is not None:
        out["biz_opaque_callback_data"] = biz_opaque_callback_data
    if conversation is not None:
        out["conversation"] = dict(conversation)
    if pricing is not None:
        out["pricing"] = dict(pricing)
    if errors:
        out["errors"] = errors
    return out


def inbound_value(*, wa_id: str, name: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """`value.contacts[]` + `value.messages[]` for one customer message."""
    return {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": [dict(message)]}


def user_preferences_value(*, wa_id: str, name: str, value: str, timestamp: int) -> dict[str, Any]:
    """`value` of a `user_preferences` webhook (marketing stop / resume)."""
    detail = ("User requested to stop marketing messages" if value == "stop"
              else "User requested to resume marketing messages")
    return {
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "user_preferences": [{"wa_id": wa_id, "detail": detail, "category": "marketing_messages",
                              "value": value, "timestamp": timestamp}],
    }


@dataclass(slots=True)
class StatusEvent:
    """A status update, batched with others of the same number into one POST."""

    phone_number_id: str
    status: dict[str, Any]
    error_code: int | None = None


@dataclass(slots=True)
class ValueEvent:
    """Any other change value (inbound message, user preference), sent in its own POST."""

    phone_number_id: str
    value: dict[str, Any]
    field_name: str = "messages"
    wamid: str | None = None


@dataclass(slots=True)
class WabaEvent:
    """A change of the WhatsApp Business Account itself (a template's status), sent in its own POST."""

    waba_id: str
    value: dict[str, Any]
    field_name: str
    time_s: int


Event = StatusEvent | ValueEvent | WabaEvent


@dataclass(slots=True)
class _Post:
    body: bytes
    events: int
    generation: int
    attempt: int = 0


@dataclass
class DeliveryStats:
    """Webhook delivery counters since start or the last reset (events, and POSTs)."""

    delivered: int = 0
    failed: int = 0
    posts_delivered: int = 0
    posts_failed: int = 0
    retries: int = 0
    last_error: str | None = None


class WebhookDispatcher:
    """Timers, a ready queue and worker tasks: due events become signed POSTs; failures retry with backoff."""

    def __init__(
        self,
        *,
        url: str,
        secret: str,
        waba_id: str | Callable[[str], str],
        metadata: Callable[[str], Mapping[str, str]],
        client: httpx.AsyncClient | None = None,
        on_due: Callable[[Event], None] | None = None,
        metrics: SimMetrics | None = None,
        rng: random.Random | None = None,
        max_tries: int = 10,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        timeout_s: float = 5.0,
        concurrency: int = 8,
        batch_max: int = 100,
        linger_s: float = 0.02,
    ) -> None:
        self.url = url
        self._secret = secret
        # `entry.id` of a number's webhooks: the WABA of that number (one WABA for every number when a str)
        self._waba_of: Callable[[str], str] = (lambda _pnid: waba_id) if isinstance(waba_id, str) else waba_id
        self._metadata = metadata
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._on_due = on_due
        self._metrics = metrics
        self._rng = rng or random.Random()
        self._max_tries = max_tries
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._concurrency = concurrency
        self._batch_max = batch_max
        self._linger_s = linger_s
        self._timers: list[tuple[float, int, Event | _Post]] = []
        self._order = itertools.count()
        self._ready: asyncio.Queue[Event | _Post] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._generation = 0
        self._pending = 0
        self.running = False
        self.stats = DeliveryStats()

    # -- scheduling ------------------------------------------------------------------------------

    def schedule(self, delay_s: float, event: Event) -> None:
        """Emit `event` after `delay_s` seconds (never blocks the caller)."""
        self._pending += 1
        self._gauge()
        self._push(delay_s, event)

    def _push(self, delay_s: float, item: Event | _Post) -> None:
        if delay_s <= 0:
            self._make_ready(item)
            return
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._order), item))
        self._wake.set()

    def _make_ready(self, item: Event | _Post) -> None:
        if not isinstance(item, _Post) and self._on_due is not None:
            try:
                self._on_due(item)
            except Exception:  # a bookkeeping bug must not stop webhooks
                log.exception("on_due hook failed")
        self._ready.put_nowait(item)

    @property
    def pending(self) -> int:
        """Events scheduled, queued, in flight or waiting for a retry."""
        return self._pending

    def clear(self) -> None:
        """Drop every pending event and retry; POSTs in flight finish but are no longer counted."""
        self._generation += 1
        self._timers.clear()
        while not self._ready.empty():
            self._ready.get_nowait()
        self._pending = 0
        self.stats = DeliveryStats()
        self._gauge()

    def _gauge(self) -> None:
        if self._metrics is not None:
            self._metrics.webhooks_pending.set(self._pending)

    # -- running ---------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set (a `scrm_common.runtime` loop)."""
        tasks = [asyncio.create_task(self._timer_loop(), name="webhook-timers")]
        tasks += [asyncio.create_task(self._worker(), name=f"webhook-worker-{i}")
                  for i in range(self._concurrency)]
        self.running = True
        try:
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            for task in done:
                if task is not stopper and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            self.running = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._owns_client:
                await self._client.aclose()

    async def _timer_loop(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, item = heapq.heappop(self._timers)
                self._make_ready(item)
            timeout = self._timers[0][0] - now if self._timers else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def _worker(self) -> None:
        while True:
            batch = [await self._ready.get()]
            if self._linger_s > 0 and self._ready.qsize() < self._batch_max:
                # Like Kafka's linger.ms: a moment's wait turns many single-status POSTs into one.
                await asyncio.sleep(self._linger_s)
            while len(batch) < self._batch_max and not self._ready.empty():
                batch.append(self._ready.get_nowait())
            for post in self._posts(batch):
                await self._deliver(post)

    def _posts(self, batch: list[Event | _Post]) -> list[_Post]:
        posts = [item for item in batch if isinstance(item, _Post)]
        statuses: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for item in batch:
            if isinstance(item, StatusEvent):
                statuses[item.phone_number_id].append(item.status)
            elif isinstance(item, ValueEvent):
                payload = envelope(self._waba_of(item.phone_number_id), self._metadata(item.phone_number_id),
                                   item.value, item.field_name)
                posts.append(_Post(encode(payload), 1, self._generation))
            elif isinstance(item, WabaEvent):
                payload = envelope(item.waba_id, None, item.value, item.field_name, item.time_s)
                posts.append(_Post(encode(payload), 1, self._generation))
        for pnid, items in statuses.items():
            for start in range(0, len(items), self._batch_max):
                chunk = items[start:start + self._batch_max]
                payload = envelope(self._waba_of(pnid), self._metadata(pnid), {"statuses": chunk})
                posts.append(_Post(encode(payload), len(chunk), self._generation))
        return posts

    async def _deliver(self, post: _Post) -> None:
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self._secret, post.body),
                   "User-Agent": "facebookexternalua"}
        started = time.monotonic()
        error: str | None = None
        try:
            response = await self._client.post(self.url, content=post.body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except Exception as exc:  # connection refused, timeouts, bad URL: all are retried
            error = f"{type(exc).__name__}: {exc}"
        if self._metrics is not None:
            self._metrics.webhook_latency.observe(time.monotonic() - started)
            self._metrics.webhook_posts.labels("ok" if error is None else "error").inc()
        if post.generation != self._generation:
            return
        if error is None:
            self._pending -= post.events
            self.stats.delivered += post.events
            self.stats.posts_delivered += 1
            if self._metrics is not None:
                self._metrics.webhooks_delivered.inc(post.events)
            self._gauge()
            return
        post.attempt += 1
        self.stats.last_error = error
        if post.attempt >= self._max_tries:
            log.warning("webhook gave up after %d tries (%s): %d events lost", post.attempt, error, post.events)
            self._pending -= post.events
            self.stats.failed += post.events
            self.stats.posts_failed += 1
            if self._metrics is not None:
                self._metrics.webhooks_failed.inc(post.events)
            self._gauge()
            return
        self.stats.retries += 1
        ceiling = min(self._retry_max_s, self._retry_base_s * 2 ** (post.attempt - 1))
        self._push(self._rng.uniform(ceiling / 2, ceiling), post)
