"""Sender handlers: queue commands, dispatch them paced per account, settle outcomes, resolve doubt."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.clock import Clock
from scrm_common.contracts import topics
from scrm_common.contracts.commands import SendMessage
from scrm_common.contracts.envelope import EventRecord, encode_event
from scrm_common.contracts.events import Contact, MessageStatus, StatusData
from scrm_common.db.outbox import OutboxRow, enqueue
from scrm_common.kafka.consumer import Item
from scrm_common.observability.metrics import LATENCY_BUCKETS
from sender.adapters.cloud_api import Accepted, CloudApiClient, NotSent, Rejected, Unknown, message_body
from sender.adapters.db import Account, Catalog, Claimed, SendLog
from sender.domain.outcomes import Next, RetryPolicy, classify
from sender.domain.pacing import after_claim, allowance
from sender.domain.refusal import refusal

log = logging.getLogger(__name__)


class SenderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter("scrm_sender_messages_total", "Messages by outcome", ["outcome", "category"],
                                registry=registry)
        self.provider_calls = Counter("scrm_sender_provider_calls_total", "Cloud API calls by result",
                                      ["result", "code"], registry=registry)
        self.provider_seconds = Histogram("scrm_sender_provider_call_seconds", "Cloud API call duration",
                                          buckets=LATENCY_BUCKETS, registry=registry)
        self.event_to_provider = Histogram(
            "scrm_sender_event_to_provider_seconds", "From the event's ingest to the provider accepting the message",
            ["category"], buckets=LATENCY_BUCKETS, registry=registry)
        self.occurred_to_provider = Histogram(
            "scrm_sender_occurred_to_provider_seconds",
            "From the event's own occurred_at to the provider accepting the message", ["category"],
            buckets=(*LATENCY_BUCKETS, 3600.0), registry=registry)
        self.doubt = Counter("scrm_sender_in_doubt_total", "In-doubt sends by resolution", ["resolution"],
                             registry=registry)


def outcome_event(command: SendMessage, *, status: str, at: datetime, wamid: str | None = None,
                  code: int | None = None, reason: str | None = None) -> OutboxRow:
    """`message.status` for `scrm.events.v1`, carrying the flow and idempotency key."""
    digest = hashlib.sha256(command.idempotency_key.encode()).hexdigest()[:32]
    contact = Contact(phone=command.to, external_id=None if command.contact_key == command.to else command.contact_key)
    event = MessageStatus(
        event_id=f"send:{digest}:{status}", type="message.status", occurred_at=at, contact=contact,
        data=StatusData(message_id=wamid, status=status, error_code=code, error_reason=reason[:500] if reason else None,
                        idempotency_key=command.idempotency_key, flow=command.flow, account_id=command.account_id,
                        category=command.category))
    key, value, headers = encode_event(command.tenant, event, ingested_at=at, correlation_id=command.correlation_id)
    return OutboxRow(topics.EVENTS, key, value, [(k, v.decode()) for k, v in headers])


class CommandHandler:
    """Batch handler for `scrm.send-commands.v1`: each command is queued once, or failed with a reason."""

    def __init__(self, *, engine: AsyncEngine, log_: SendLog, catalog: Catalog, clock: Clock,
                 metrics: SenderMetrics, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        self._log = log_
        self._catalog = catalog
        self._clock = clock
        self._metrics = metrics
        self._on_commit = on_commit

    async def __call__(self, items: Sequence[Item[SendMessage]]) -> None:
        now = self._clock.now()
        commands = [item.value for item in items]
        async with self._engine.begin() as conn:
            known = await self._log.known_accounts(conn, {(c.tenant, c.account_id) for c in commands})
            invalid = await self._log.invalid_numbers(conn, {(c.tenant, c.to) for c in commands})
            rows: list[dict[str, object]] = []
            failures: dict[tuple[str, str], tuple[SendMessage, str]] = {}
            for c in commands:
                reason = await self._refusal(c, known, invalid)
                if reason:
                    failures[(c.tenant, c.idempotency_key)] = (c, reason)
                rows.append({
                    "tenant": c.tenant, "idempotency_key": c.idempotency_key, "account_id": c.account_id,
                    "flow": c.flow, "category": c.category, "contact_key": c.contact_key, "to_phone": c.to,
                    "command": c.model_dump_json(exclude_none=True), "state": "failed" if reason else "queued",
                    "next_attempt_at": now, "queued_at": now, "event_ingested_at": c.event_ingested_at,
                    "error_reason": reason,
                })
            new = await self._log.record(conn, rows)
            outbox = [outcome_event(c, status="failed", at=now, reason=reason)
                      for key, (c, reason) in failures.items() if key in new]
            await enqueue(conn, outbox)
        for c, _ in failures.values():
            self._metrics.outcomes.labels("refused", c.category).inc()
        self._on_commit()

    async def _refusal(self, c: SendMessage, known: set[tuple[str, str]], invalid: set[tuple[str, str]]) -> str | None:
        template = None
        if c.template is not None:
            template = await self._catalog.lookup(c.tenant, c.template.name, c.template.language)
        return refusal(
            account_id=c.account_id, account_known=(c.tenant, c.account_id) in known,
            number_invalid=(c.tenant, c.to) in invalid,
            template_name=c.template.name if c.template else None,
            language=c.template.language if c.template else None, template=template,
            parameters=c.template.parameters if c.template else ())


class Dispatcher:
    """Hands due messages to the provider, paced per account (R-S3), and settles the outcomes."""

    def __init__(self, *, engine: AsyncEngine, log_: SendLog, client: CloudApiClient, clock: Clock,
                 metrics: SenderMetrics, retry: RetryPolicy, poll_seconds: float, doubt_timeout: timedelta,
                 on_commit: Callable[[], None], evidence_caught_up: Callable[[], datetime | None],
                 batch_size: int = 200, rng: random.Random | None = None) -> None:
        self._engine = engine
        self._log = log_
        self._client = client
        self._clock = clock
        self._metrics = metrics
        self._retry = retry
        self._poll = poll_seconds
        self._doubt_timeout = doubt_timeout
        self._on_commit = on_commit
        self._evidence_caught_up = evidence_caught_up
        self._batch_size = batch_size
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._last_sweep = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not stop.is_set():
            self._wake.clear()
            try:
                if loop.time() - self._last_sweep > 1.0:
                    self._last_sweep = loop.time()
                    await self.release_doubtful()
                busy = await self.dispatch_once()
                failures = 0
            except Exception as exc:
                # A failed pass leaves rows queued or "sending": the next pass or the doubt rule settles them.
                failures += 1
                log.warning("dispatch pass failed (%d in a row), retrying: %r", failures, exc)
                await asyncio.sleep(self._retry.backoff.delay(min(failures, 10), self._rng))
                continue
            if not busy:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
                except TimeoutError:
                    pass

    async def release_doubtful(self) -> int:
        """Resend what stayed in doubt: no provider evidence although the evidence stream was read past it.

        A message claimed at T is released only once the evidence consumer has caught up at some moment
        after T + timeout, so every status webhook that arrived in that time was applied first — after a
        crash the backlog of webhooks is read before anything is sent again.
        """
        caught_up = self._evidence_caught_up()
        if caught_up is None:
            return 0
        now = self._clock.now()
        async with self._engine.begin() as conn:
            released = await self._log.release_doubtful(conn, now, min(now, caught_up) - self._doubt_timeout)
        if released:
            log.warning("resending %d messages left in doubt with no provider evidence", released)
            self._metrics.doubt.labels("resent").inc(released)
        return released

    async def dispatch_once(self) -> bool:
        """One pass over accounts with due work; True when something was sent."""
        async with self._engine.connect() as conn:
            accounts = await self._log.accounts_with_due_work(conn, self._clock.now())
        if not accounts:
            return False
        sent = await asyncio.gather(*(self._dispatch_account(t, a) for t, a in accounts))
        return any(sent)

    async def _dispatch_account(self, tenant: str, account_id: str) -> bool:
        now = self._clock.now()
        async with self._engine.begin() as conn:
            account = await self._log.lock_account(conn, tenant, account_id)
            if account is None:
                return False  # another sender instance is pacing this account right now
            last_hour, last_day = await self._log.marketing_counts(conn, account, now)
            allowed = allowance(account.policy, account.pacing, now, account_created_at=account.created_at,
                                marketing_last_hour=last_hour, marketing_last_day=last_day)
            claimed = await self._log.claim(conn, account, now, utility=min(allowed.utility, self._batch_size),
                                            marketing=allowed.marketing)
            marketing = sum(1 for c in claimed if c.command.get("category") == "marketing")
            await self._log.save_pacing(conn, account, after_claim(
                account.policy, account.pacing, now, utility=len(claimed) - marketing, marketing=marketing,
                jitter=self._rng.random()))
        if not claimed:
            return False
        commands = [SendMessage.model_validate(c.command) for c in claimed]
        raw = await asyncio.gather(*(self._call(account, c) for c in commands), return_exceptions=True)
        # A call that raised may still have reached the provider: in doubt, never a reason to drop the batch.
        results = [Unknown(repr(r)) if isinstance(r, BaseException) else r for r in raw]
        await self._settle(list(zip(claimed, commands, results, strict=True)))
        return True

    async def _call(self, account: Account, command: SendMessage) -> Accepted | Rejected | NotSent | Unknown:
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await self._client.send(phone_number_id=account.account_id, access_token=account.access_token,
                                         body=message_body(command))
        self._metrics.provider_seconds.observe(loop.time() - started)
        code = str(result.code) if isinstance(result, Rejected) else ""
        self._metrics.provider_calls.labels(type(result).__name__.lower(), code).inc()
        return result

    async def _settle(self, outcomes: list[tuple[Claimed, SendMessage, object]]) -> None:
        now = self._clock.now()
        sent: list[dict[str, object]] = []
        retry: list[dict[str, object]] = []
        failed: list[dict[str, object]] = []
        invalid: list[dict[str, object]] = []
        outbox: list[OutboxRow] = []
        for claimed, command, result in outcomes:
            key = {"tenant": claimed.tenant, "key": claimed.idempotency_key}
            if isinstance(result, Accepted):
                sent.append(key | {"wamid": result.wamid, "at": now})
                outbox.append(outcome_event(command, status="sent", at=now, wamid=result.wamid))
                self._metrics.outcomes.labels("sent", command.category).inc()
                self._metrics.occurred_to_provider.labels(command.category).observe(
                    max(0.0, (now - command.event_occurred_at).total_seconds()))
                if command.event_ingested_at is not None:
                    self._metrics.event_to_provider.labels(command.category).observe(
                        max(0.0, (now - command.event_ingested_at).total_seconds()))
                continue
            if isinstance(result, Unknown):
                # "sending" stays recorded: the provider's webhook (carrying our key) or the doubt timeout decides.
                log.warning("send in doubt: %s", result.reason, extra={"idempotency_key": claimed.idempotency_key})
                self._metrics.doubt.labels("pending").inc()
                continue
            next_ = Next.RETRY if isinstance(result, NotSent) else classify(result.code)
            code = result.code if isinstance(result, Rejected) else None
            reason = result.reason if isinstance(result, NotSent) else result.details
            if next_ in (Next.RETRY, Next.RETRY_RECIPIENT):
                at = self._retry.next_attempt_at(next_, claimed.attempts, now, self._rng.random())
                if at is not None:
                    retry.append(key | {"next": at, "code": code, "reason": reason})
                    self._metrics.outcomes.labels("retry", command.category).inc()
                    continue
                reason = f"gave up after {claimed.attempts} attempts: {reason}"
            if next_ is Next.INVALID_NUMBER:
                invalid.append({"tenant": claimed.tenant, "phone": command.to, "code": code, "at": now})
            failed.append(key | {"code": code, "reason": reason})
            outbox.append(outcome_event(command, status="failed", at=now, code=code, reason=reason))
            self._metrics.outcomes.labels("failed", command.category).inc()
        async with self._engine.begin() as conn:
            await self._log.mark_sent(conn, sent)
            await self._log.mark_retry(conn, retry)
            await self._log.mark_failed(conn, failed)
            await self._log.mark_invalid_numbers(conn, invalid)
            await enqueue(conn, outbox)
        if outbox:
            self._on_commit()


class EvidenceHandler:
    """Batch handler on `scrm.events.v1`: what the provider reports about our messages.

    Any status naming our key proves the call went through (it settles doubt); a `failed` status
    records the provider's reason, and an undeliverable or invalid number is marked (R-S7).
    """

    def __init__(self, *, engine: AsyncEngine, log_: SendLog, metrics: SenderMetrics) -> None:
        self._engine = engine
        self._log = log_
        self._metrics = metrics

    async def __call__(self, items: Sequence[Item[EventRecord]]) -> None:
        accepted, failed, invalid = [], [], []
        for item in items:
            event = item.value.event
            if not isinstance(event, MessageStatus) or not event.data.idempotency_key:
                continue
            key = {"tenant": item.value.tenant, "key": event.data.idempotency_key}
            if event.data.message_id:
                accepted.append(key | {"wamid": event.data.message_id, "at": event.occurred_at})
            if event.data.status == "failed" and event.data.message_id:
                failed.append(key | {"code": event.data.error_code,
                                     "reason": event.data.error_reason or "failed after the provider accepted it"})
                if classify(event.data.error_code) is Next.INVALID_NUMBER and event.contact.phone:
                    invalid.append({"tenant": item.value.tenant, "phone": event.contact.phone,
                                    "code": event.data.error_code, "at": event.occurred_at})
        if not accepted:
            return
        async with self._engine.begin() as conn:
            confirmed = await self._log.confirm_by_evidence(conn, accepted)
            await self._log.mark_failed_by_provider(conn, failed)
            await self._log.mark_invalid_numbers(conn, invalid)
        if confirmed:
            self._metrics.doubt.labels("confirmed_by_webhook").inc(confirmed)

