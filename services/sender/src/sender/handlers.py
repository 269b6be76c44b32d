"""Sender handlers: queue commands, dispatch them paced per account, settle outcomes, resolve doubt."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common import runtime
from scrm_common.clock import Clock
from scrm_common.contracts import topics
from scrm_common.contracts.commands import GatePolicy, SendMessage, WithdrawMessage
from scrm_common.contracts.envelope import EventRecord, encode_event
from scrm_common.contracts.events import (
    AccountUpdated,
    Contact,
    MarketingPreferenceChanged,
    MarketingPreferenceData,
    MessageStatus,
    StatusData,
    TemplateUpdated,
)
from scrm_common.db.outbox import OutboxRow, enqueue
from scrm_common.identity import match_key
from scrm_common.kafka.consumer import Item
from scrm_common.observability.metrics import LATENCY_BUCKETS
from sender.adapters.accounts import TOKEN_UNREADABLE, UNREADABLE_REASON
from sender.adapters.cloud_api import Accepted, CloudApiClient, NotSent, Rejected, Unknown, message_body
from sender.adapters.db import Account, Candidate, Catalog, Claimed, Reachability, SendLog, Sent
from sender.adapters.reachability import ReachabilityStore
from sender.adapters.templates import TemplateStore
from sender.domain.gate.decide import (
    MONTH,
    WITHDRAWN,
    ContactState,
    Dispatch,
    GateMessage,
    History,
    contact_zone,
    deferral_reason,
    fatigue_pause,
    gate,
    once_since,
    reply_delays,
    stated_preferences,
)
from sender.domain.gate.fatigue import REMINDER_RULE
from sender.domain.gate.verdicts import Defer, Suppress
from sender.domain.gate.zone import number_zone
from sender.domain.outcomes import RetryPolicy, after_error, meaning
from sender.domain.pacing import after_claim, allowance
from sender.domain.reachability import MARKETING_LIMIT_PAUSE, number_of
from sender.domain.refusal import refusal
from sender.domain.restrictions import Blocked, Restriction, blocked, change_from_update, error_hold
from sender.domain.templates import Template, status_after_event

log = logging.getLogger(__name__)

# The sender's consumer group on scrm.events.v1 and what its EvidenceHandler reads (main.py adds the reachability
# record's events to the same group).
EVIDENCE_GROUP = "sender-evidence"
EVIDENCE_EVENTS: frozenset[str] = frozenset({"message.status", "account.updated", "template.updated"})
# Meta's per-user marketing limit: the contact gets no marketing for 24 h (CLOUD-API.md, the gate's META-131049).
META_MARKETING_LIMIT = 131049
# A message waiting for a restriction that lasts until lifted is looked at again this often.
UNTIL_LIFTED_RECHECK = timedelta(hours=1)
DEFAULT_INVALID_NUMBER_TTL = timedelta(days=30)
# Marketing messages the send gate looks at per account and pass (in queue order): bounded, never the backlog.
DEFAULT_GATE_BATCH = 50
DEFAULT_POLICY = GatePolicy()  # a command without a policy: SPEC's numbers (read only, shared)


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
        self.held = Counter("scrm_sender_held_total", "Messages held back by an account restriction or hold",
                            ["kind"], registry=registry)
        self.account_updates = Counter("scrm_sender_account_updates_total",
                                       "Account and template events acted on", ["what"], registry=registry)
        self.gate = Counter("scrm_sender_gate_total",
                            "Send-gate answers acted on: dispatch (claimed), deferred (a new instant), suppressed",
                            ["verdict", "rule"], registry=registry)


def stored_command(raw: object) -> SendMessage:
    """A send command as the send log stores it (`messages.command`, jsonb read back as a dict) — validated in
    JSON mode, as it came from the topic: the strict contract takes times and instants (`policy.quiet_hours`,
    `expires_at` …) only as JSON text, never as Python strings. Raises `pydantic.ValidationError`."""
    return SendMessage.model_validate_json(raw if isinstance(raw, str | bytes) else json.dumps(raw))


def _contact(command: SendMessage, wa_id: str | None = None) -> Contact:
    return Contact(phone=command.to, wa_id=wa_id,
                   external_id=None if command.contact_key == command.to else command.contact_key)


def outcome_event(command: SendMessage, *, status: str, at: datetime, wamid: str | None = None,
                  code: int | None = None, reason: str | None = None, wa_id: str | None = None,
                  late_retry: bool = False, rule: str | None = None,
                  deferred_until: datetime | None = None) -> OutboxRow:
    """`message.status` for `scrm.events.v1`, carrying the flow and idempotency key.

    A "sent" status names the WhatsApp identity Meta answered for the number sent to
    (`contact.wa_id`, `contact.phone` = the number sent to), so every consumer learns phone ↔ wa_id.
    The one 24 h retry (R-S7) gets its own event id: its new wamid must not be taken for a duplicate.
    The send gate's outcomes (issue 8): `deferred` carries `rule` and `deferred_until` (UTC) and its
    event id names the deferral instant (`send:<digest>:deferred:<unix seconds>`: each new deferral is
    a new event, the same one again a duplicate); `suppressed` carries `rule` (`send:<digest>:suppressed`).
    """
    digest = hashlib.sha256(command.idempotency_key.encode()).hexdigest()[:32]
    suffix = ":late" if late_retry else ""
    if status == "deferred" and deferred_until is not None:
        suffix = f":{int(deferred_until.timestamp())}"
    event = MessageStatus(
        event_id=f"send:{digest}:{status}{suffix}", type="message.status", occurred_at=at,
        contact=_contact(command, wa_id),
        data=StatusData(message_id=wamid, status=status, error_code=code, error_reason=reason[:500] if reason else None,
                        idempotency_key=command.idempotency_key, flow=command.flow, account_id=command.account_id,
                        category=command.category, rule=rule, deferred_until=deferred_until))
    key, value, headers = encode_event(command.tenant, event, ingested_at=at, correlation_id=command.correlation_id)
    return OutboxRow(topics.EVENTS, key, value, [(k, v.decode()) for k, v in headers])


def unreadable_failure(tenant: str, account_id: str, candidate: Candidate, *, at: datetime,
                       reason: str) -> OutboxRow | None:
    """`message.status` `failed` for a queued row whose stored command no longer parses (a release's contract
    change, a hand-edited row): built from the row's own columns (key, flow, category, contact, number) — the
    same event id a command's `failed` status has. None (logged) when even those do not make an event."""
    digest = hashlib.sha256(candidate.idempotency_key.encode()).hexdigest()[:32]
    try:
        event = MessageStatus(
            event_id=f"send:{digest}:failed", type="message.status", occurred_at=at,
            contact=Contact(phone=candidate.to_phone, external_id=None if candidate.contact_key == candidate.to_phone
                            else candidate.contact_key),
            data=StatusData(status="failed", error_reason=reason[:500], idempotency_key=candidate.idempotency_key,
                            flow=candidate.flow or None, account_id=account_id, category=candidate.category))
    except ValidationError as exc:
        log.warning("no failed status for %s: its row does not make one: %s", candidate.idempotency_key, exc,
                    extra={"tenant": tenant})
        return None
    key, value, headers = encode_event(tenant, event, ingested_at=at, correlation_id=None)
    return OutboxRow(topics.EVENTS, key, value, [(k, v.decode()) for k, v in headers])


def opt_out_event(command: SendMessage, *, at: datetime, detail: str) -> OutboxRow:
    """`contact.marketing_preference_changed` (stop, from error 131050 answered synchronously).

    When 131050 arrives by webhook, ingest publishes this event itself; the sender only covers the
    synchronous answer, which no webhook reports.
    """
    digest = hashlib.sha256(command.idempotency_key.encode()).hexdigest()[:32]
    event = MarketingPreferenceChanged(
        event_id=f"send:{digest}:opt-out", type="contact.marketing_preference_changed", occurred_at=at,
        contact=_contact(command), data=MarketingPreferenceData(
            value="stop", source="error_131050", account_id=command.account_id, detail=detail[:500] or None))
    key, value, headers = encode_event(command.tenant, event, ingested_at=at, correlation_id=command.correlation_id)
    return OutboxRow(topics.EVENTS, key, value, [(k, v.decode()) for k, v in headers])


class CommandHandler:
    """Batch handler for `scrm.send-commands.v1`: each send is queued once, or failed with a reason, or — withdrawn
    before it came — recorded suppressed (WITHDRAWN); each withdrawal suppresses its message while still queued.

    - `SendMessage`: refused at once (R-S2 template, R-S7 invalid number, unknown account) → `failed`; its key
      withdrawn already (a `withdrawals` tombstone, or a withdrawal in the same batch) → `suppressed` with rule
      WITHDRAWN and the withdrawal's reason, never queued; else `queued` with its `expires_at`.
    - `WithdrawMessage`: a message still `queued` → `suppressed` (WITHDRAWN, the command's reason); otherwise
      a tombstone: no message yet → the send that follows is never queued; `sending`/`sent` → it was handed to
      the provider, but should it come back to the queue (a retry, a hold, a doubt released, a retryable
      failure reported later) the gate suppresses it WITHDRAWN instead of sending it again.

    Rows are locked in (tenant, key) order first, as the dispatcher's settlement and the evidence consumer do.
    Redelivery changes nothing and publishes nothing twice: every write is conditional on the state it changes.
    """

    def __init__(self, *, engine: AsyncEngine, log_: SendLog, catalog: Catalog, clock: Clock,
                 metrics: SenderMetrics, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        self._log = log_
        self._catalog = catalog
        self._clock = clock
        self._metrics = metrics
        self._on_commit = on_commit

    async def __call__(self, items: Sequence[Item[SendMessage | WithdrawMessage]]) -> None:
        now = self._clock.now()
        commands = [item.value for item in items if isinstance(item.value, SendMessage)]
        withdrawals = [item.value for item in items if isinstance(item.value, WithdrawMessage)]
        withdrawn_here = {(w.tenant, w.idempotency_key): w.reason for w in withdrawals}
        suppressed: list[SendMessage] = []
        async with self._engine.begin() as conn:
            if withdrawals:  # the rows a withdrawal may change, in key order (sends alone only insert)
                await self._log.lock_messages(conn, [(c.tenant, c.idempotency_key) for c in (*commands, *withdrawals)])
            known = await self._log.known_accounts(conn, {(c.tenant, c.account_id) for c in commands})
            invalid = await self._log.invalid_numbers(conn, {(c.tenant, c.to) for c in commands})
            tombstones = await self._log.withdrawn(conn, {(c.tenant, c.idempotency_key) for c in commands})
            # R-S2: each template as the account's WABA has it now (status included), read in this transaction
            templates = await self._catalog.lookup_many(conn, {
                (c.tenant, c.account_id, c.template.name, c.template.language) for c in commands if c.template})
            rows: list[dict[str, object]] = []
            failures: dict[tuple[str, str], tuple[SendMessage, str]] = {}
            withdrawn: dict[tuple[str, str], tuple[SendMessage, str]] = {}
            for c in commands:
                key = (c.tenant, c.idempotency_key)
                why = tombstones.get(key) or withdrawn_here.get(key)
                reason = None if why else self._refusal(c, known, invalid, templates, now)
                if why:
                    withdrawn[key] = (c, why)
                elif reason:
                    failures[key] = (c, reason)
                rows.append({
                    "tenant": c.tenant, "idempotency_key": c.idempotency_key, "account_id": c.account_id,
                    "flow": c.flow, "category": c.category, "contact_key": c.contact_key, "to_phone": c.to,
                    "command": c.model_dump_json(exclude_none=True),
                    "state": "suppressed" if why else "failed" if reason else "queued",
                    "next_attempt_at": now, "queued_at": now, "event_ingested_at": c.event_ingested_at,
                    "error_reason": why or reason, "expires_at": c.expires_at, "rule": WITHDRAWN if why else None,
                    "suppressed_at": now if why else None,
                })
            new = await self._log.record(conn, rows)
            outbox = [outcome_event(c, status="failed", at=now, reason=reason)
                      for key, (c, reason) in failures.items() if key in new]
            for key, (c, why) in withdrawn.items():
                if key in new:
                    outbox.append(outcome_event(c, status="suppressed", at=now, reason=why, rule=WITHDRAWN))
                    suppressed.append(c)
            suppressed += await self._withdraw(conn, withdrawals, now, outbox)
            await enqueue(conn, outbox)
        for c, _ in failures.values():
            self._metrics.outcomes.labels("refused", c.category).inc()
        for c in suppressed:
            self._metrics.outcomes.labels("suppressed", c.category).inc()
            self._metrics.gate.labels("suppressed", WITHDRAWN).inc()
        self._on_commit()

    async def _withdraw(self, conn: AsyncConnection, withdrawals: list[WithdrawMessage], now: datetime,
                        outbox: list[OutboxRow]) -> list[SendMessage]:
        """Suppress the still-queued messages these withdrawals name (their `suppressed` statuses added to
        `outbox`), store tombstones for every other (not recorded yet, or claimed/sent: should it be queued again,
        the gate suppresses it); the commands suppressed. A stored command that no longer parses is suppressed
        all the same (logged, no status)."""
        if not withdrawals:
            return []
        latest = {(w.tenant, w.idempotency_key): w for w in withdrawals}
        rows = [{"tenant": t, "key": k, "reason": w.reason, "at": now} for (t, k), w in sorted(latest.items())]
        done = await self._log.withdraw_queued(conn, rows, WITHDRAWN)
        suppressed: list[SendMessage] = []
        for tenant, key, raw in done:
            try:
                command = stored_command(raw)
            except ValidationError as exc:
                log.warning("withdrew %s, whose stored command no longer parses: %s", key, exc,
                            extra={"tenant": tenant})
                continue
            outbox.append(outcome_event(command, status="suppressed", at=now, reason=latest[(tenant, key)].reason,
                                        rule=WITHDRAWN))
            suppressed.append(command)
        rest = set(latest) - {(t, k) for t, k, _ in done}
        states = await self._log.message_states(conn, rest)
        await self._log.add_withdrawals(conn, [r for r in rows if (r["tenant"], r["key"]) in rest])
        for (tenant, key), state in sorted(states.items()):
            log.info("withdrawal of %s: the message is %s (%s); kept, so it does not go again if queued again", key,
                     state, "already handed to the provider" if state in ("sending", "sent") else "settled",
                     extra={"tenant": tenant, "idempotency_key": key})
        return suppressed

    @staticmethod
    def _refusal(c: SendMessage, known: set[tuple[str, str]], invalid: dict[tuple[str, str], datetime],
                 templates: dict[tuple[str, str, str, str], Template], now: datetime) -> str | None:
        t = c.template
        return refusal(
            account_id=c.account_id, account_known=(c.tenant, c.account_id) in known,
            invalid_until=invalid.get((c.tenant, c.to)), now=now,
            template_name=t.name if t else None, language=t.language if t else None,
            template=templates.get((c.tenant, c.account_id, t.name, t.language)) if t else None,
            parameters=t.parameters if t else (), header_type=t.header.type if t and t.header else None,
            buttons=[(b.index, b.sub_type) for b in t.buttons] if t else ())


def _contact_state(candidate: Candidate, command: SendMessage, record: Reachability | None,
                   paused: dict[str, datetime], once: datetime | None = None) -> ContactState:
    """What the gate knows about the candidate's contact: its reachability record (zone, opt-out, window,
    stated preferences, Meta's 131049 block), its number's invalid mark and its fatigue pauses. The zone is
    looked up only for marketing (the only category R-S4 reads it for); with neither a record nor the command's
    zone it is the number's country's main zone (`zone.number_zone`, as the record derives it). Stated
    preferences (R-G4): the record's when it has any, else the command's (`SendMessage.preferences`, the
    person's as the deciding service knows them — a contact event naming no phone reaches only that). `once`:
    131049's "then once" state (`decide.once_since`)."""
    zone = None
    if candidate.category == "marketing":
        own = record.timezone if record is not None and not record.zone_derived else None
        derived = record.timezone if record is not None and record.zone_derived else None
        fallback = None if own or command.timezone or derived else number_zone(candidate.to_phone)
        zone = contact_zone(own, command.timezone, derived, fallback)
    stated: dict[str, object] = dict(record.preferences) if record is not None else {}
    if not stated and command.preferences is not None:
        stated = command.preferences.model_dump(mode="json", exclude_none=True)
    week, month, hours, passive = stated_preferences(stated)
    return ContactState(
        zone=zone or contact_zone(None, None, None, None), opted_out=record is not None and record.opted_out_at
        is not None, last_inbound_at=record.last_inbound_at if record is not None else None, max_per_week=week,
        max_per_month=month, preferred_hours=hours, passive=passive,
        blocked_until=record.blocked_until if record is not None else None, once_since=once,
        invalid_until=candidate.invalid_until, paused_until=paused)


def _history(message: GateMessage, marketing: list[Sent], sent: list[Sent], in_pass: list[datetime],
             inbound: list[datetime]) -> History:
    """The contact's history as the gate counts it: marketing sent or in flight (`marketing`: as far back as the
    pass's largest R-S5 window, at least 30 days; those picked earlier in this pass included), and for the
    message's fatigue kind its sends, the contact's delivered/read counts over `sent` (30 days, every category:
    the read rate) and its reply delays to that kind (R-T4.5)."""
    if message.category != "marketing":
        return History()
    marketing_at = tuple(s.claimed_at for s in marketing) + tuple(in_pass)
    if message.policy.fatigue is None:
        return History(marketing_at=marketing_at)
    rule = message.policy.fatigue.rule
    kind_at = tuple(s.claimed_at for s in sent if s.fatigue == rule)
    return History(marketing_at=marketing_at, kind_at=kind_at, delivered=sum(1 for s in sent if s.delivered),
                   read=sum(1 for s in sent if s.read),
                   reply_delays=reply_delays(kind_at, inbound) if rule == REMINDER_RULE else ())


class Dispatcher:
    """Hands due messages to the provider, paced per account (R-S3), and settles the outcomes."""

    def __init__(self, *, engine: AsyncEngine, log_: SendLog, client: CloudApiClient, clock: Clock,
                 metrics: SenderMetrics, retry: RetryPolicy, poll_seconds: float, doubt_timeout: timedelta,
                 on_commit: Callable[[], None], evidence_caught_up: Callable[[], datetime | None],
                 batch_size: int = 200, rng: random.Random | None = None,
                 invalid_number_ttl: timedelta = DEFAULT_INVALID_NUMBER_TTL,
                 gate_batch_size: int = DEFAULT_GATE_BATCH) -> None:
        self._invalid_ttl = invalid_number_ttl
        self._gate_batch = gate_batch_size
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
        """One pass over accounts with due work; True when something was sent.

        Claims nothing while `runtime.INTAKE` is closed (SIGUSR1, the last phase of a graceful stop): queued
        messages stay in PostgreSQL and go out when intake opens again (SIGUSR2) or at the next start, so no new
        status events are made for a broker about to stop. A pass already under way finishes.
        """
        if not runtime.INTAKE.open:
            return False
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
            if account.token_unreadable:  # never a call with an empty bearer
                await self._hold_unreadable(conn, account, now)
                return False
            await self._hold_restricted(conn, account, now)
            refused = await self._gate_templates(conn, account, now)
            last_hour, last_day = await self._log.marketing_counts(conn, account, now)
            allowed = allowance(account.policy, account.pacing, now, registered_at=account.registered_at,
                                marketing_last_hour=last_hour, marketing_last_day=last_day)
            utility = min(allowed.utility, self._batch_size)
            # Pacing allows no marketing now (the usual poll during a marketing backlog): none is locked or gated.
            candidates = await self._log.candidates(conn, account, now, utility=utility,
                                                    marketing=self._gate_batch if allowed.marketing > 0 else 0)
            picked, decided = await self._gate(conn, account, candidates, now, utility=utility,
                                               marketing=allowed.marketing)
            claimed = await self._log.claim_keys(conn, account, now, list(picked))
            marketing = sum(1 for c in claimed if c.command.get("category") == "marketing")
            await self._log.save_pacing(conn, account, after_claim(
                account.policy, account.pacing, now, utility=len(claimed) - marketing, marketing=marketing,
                jitter=self._rng.random()))
        if refused or decided:
            self._on_commit()
        if claimed:
            self._metrics.gate.labels("dispatch", "").inc(len(claimed))
        if not claimed:
            return False
        commands = [picked.get(c.idempotency_key) or stored_command(c.command) for c in claimed]
        raw = await asyncio.gather(*(self._call(account, c) for c in commands), return_exceptions=True)
        # A call that raised may still have reached the provider: in doubt, never a reason to drop the batch.
        results = [Unknown(repr(r)) if isinstance(r, BaseException) else r for r in raw]
        await self._settle(list(zip(claimed, commands, results, strict=True)))
        return True

    async def _gate(self, conn: AsyncConnection, account: Account, candidates: list[Candidate], now: datetime, *,
                    utility: int, marketing: int) -> tuple[dict[str, SendMessage], int]:
        """The send gate (`domain.gate.decide.gate`) over this pass's candidates, in queue order; R-S3 pacing then
        picks from those it lets go: up to `utility` non-marketing and `marketing` marketing messages. Returns
        the commands picked (to claim) by key, in queue order, and how many deferral/suppression statuses were
        put in the outbox.

        What the gate reads is loaded once per kind for the whole pass, never per message: the contacts'
        reachability records (marketing or free-form candidates only), their marketing history as far back as
        the largest R-S5 window among the candidates (at least 30 days; marketing candidates only), fatigue
        history, pauses and reply times (fatigue kinds only, 30 days). A marketing message picked here counts
        for the later candidates of the same contact in this pass (R-S5: in flight).

        R-S5 across accounts: before a marketing candidate's history is read its contact's gate lock is taken
        (`SendLog.lock_contacts`, held until this transaction — which claims — commits); a contact whose lock
        another pass holds keeps its marketing queued, untouched, for the next pass (never a wait).

        A row whose stored command no longer parses is `failed` with the reason (its status published from the
        row's columns); the others go on. A row withdrawn while it was being sent (a tombstone) is suppressed
        WITHDRAWN when it comes back to the queue.
        Defer → due again at `until`, the rule and a human reason recorded, a `deferred` status published only
        when the instant is new; Suppress → `suppressed` with the rule and a `suppressed` status; a fatigue
        suppression over the threshold stores the pause.
        """
        if not candidates:
            return {}, 0
        tenant = account.tenant
        outbox: list[OutboxRow] = []
        commands: dict[str, SendMessage] = {}
        unreadable: list[dict[str, object]] = []
        for c in candidates:
            try:
                commands[c.idempotency_key] = stored_command(c.command)
            except ValidationError as exc:
                reason = f"the stored command no longer parses: {exc}"[:1000]
                log.warning("failing queued message %s: %s", c.idempotency_key, reason, extra={"tenant": tenant})
                unreadable.append({"tenant": tenant, "key": c.idempotency_key, "reason": reason})
                if (event := unreadable_failure(tenant, account.account_id, c, at=now, reason=reason)) is not None:
                    outbox.append(event)
                self._metrics.outcomes.labels("refused", c.category).inc()
        await self._log.fail_queued(conn, unreadable)
        promotions = [c for c in candidates if c.category == "marketing" and c.idempotency_key in commands]
        busy = await self._log.lock_contacts(conn, tenant, {c.contact_key for c in promotions})
        candidates = [c for c in candidates if c.idempotency_key in commands
                      and not (c.category == "marketing" and c.contact_key in busy)]
        if busy:
            log.info("send gate for account %s: %d contacts' marketing left for the next pass (another pass gates "
                     "them now)", account.account_id, len(busy), extra={"tenant": tenant})
        messages: dict[str, GateMessage] = {}
        for c in candidates:
            cmd = commands[c.idempotency_key]
            messages[c.idempotency_key] = GateMessage(
                flow=cmd.flow, category=cmd.category, free_form=cmd.template is None, expires_at=cmd.expires_at,
                policy=cmd.policy or DEFAULT_POLICY, withdrawn=c.withdrawn)
        promotions = [c for c in promotions if c.contact_key not in busy]
        asked = [c for c in candidates if c.category == "marketing" or messages[c.idempotency_key].free_form]
        numbers = {c.idempotency_key: match_key(c.to_phone) for c in asked}
        records = await self._log.reachability(conn, tenant, numbers.values())
        since = now - MONTH
        window = max((timedelta(days=messages[c.idempotency_key].policy.frequency_cap.window_days)
                      for c in promotions), default=MONTH)
        known_since = now - max(MONTH, window)  # R-S5's longest window among the candidates, at least 30 days
        marketing_sent = await self._log.marketing_history(conn, tenant, {c.contact_key for c in promotions},
                                                           known_since)
        tired = [c for c in promotions if messages[c.idempotency_key].policy.fatigue is not None]
        history = await self._log.contact_history(conn, tenant, {c.contact_key for c in tired}, since)
        pauses = await self._log.fatigue_pauses(conn, tenant, {c.contact_key for c in tired}, now)
        reminders = [c for c in tired if (f := messages[c.idempotency_key].policy.fatigue) and f.rule == REMINDER_RULE]
        inbound = await self._log.inbound(conn, tenant, {numbers[c.idempotency_key] for c in reminders}, since)

        picked: dict[str, SendMessage] = {}  # in queue order
        in_pass: dict[str, list[datetime]] = {}  # contact → marketing picked in this pass
        paused_now: dict[str, dict[str, datetime]] = {}  # contact → fatigue rule → pause stored in this pass
        deferred: list[dict[str, object]] = []
        stopped: list[dict[str, object]] = []
        new_pauses: list[dict[str, object]] = []
        left = {"utility": utility, "marketing": marketing}
        announced = 0  # new deferral instants published
        for c in candidates:
            key, command, message = c.idempotency_key, commands[c.idempotency_key], messages[c.idempotency_key]
            record = records.get(numbers.get(key, ""))
            promoted = marketing_sent.get(c.contact_key, [])
            once = once_since(record.blocked_until, [(s.claimed_at, s.delivered or s.read) for s in promoted], now,
                              known_since) if record is not None and c.category == "marketing" else None
            contact = _contact_state(c, command, record, pauses.get(c.contact_key, {}) | paused_now.get(
                c.contact_key, {}), once)
            verdict = gate(message, contact, _history(message, promoted, history.get(c.contact_key, []),
                                                      in_pass.get(c.contact_key, []),
                                                      inbound.get(numbers.get(key, ""), [])), now)
            if isinstance(verdict, Dispatch):
                kind = "marketing" if c.category == "marketing" else "utility"
                if left[kind] > 0:
                    left[kind] -= 1
                    picked[key] = command
                    if kind == "marketing":
                        in_pass.setdefault(c.contact_key, []).append(now)
                continue
            if isinstance(verdict, Defer):
                reason = deferral_reason(verdict, message, contact)
                deferred.append({"key": key, "until": verdict.until, "rule": verdict.rule, "reason": reason})
                if c.deferred_until != verdict.until:
                    announced += 1
                    outbox.append(outcome_event(command, status="deferred", at=now, reason=reason, rule=verdict.rule,
                                                deferred_until=verdict.until))
                    self._metrics.gate.labels("deferred", verdict.rule).inc()
                continue
            assert isinstance(verdict, Suppress)
            stopped.append({"key": key, "rule": verdict.rule, "reason": verdict.reason})
            outbox.append(outcome_event(command, status="suppressed", at=now, reason=verdict.reason,
                                        rule=verdict.rule))
            self._metrics.gate.labels("suppressed", verdict.rule).inc()
            self._metrics.outcomes.labels("suppressed", command.category).inc()
            if (until := fatigue_pause(message, verdict, now)) is not None:
                new_pauses.append({"contact": c.contact_key, "rule": verdict.rule, "until": until,
                                   "reason": verdict.reason[:1000]})
                paused_now.setdefault(c.contact_key, {})[verdict.rule] = until
        await self._log.defer(conn, tenant, deferred)
        await self._log.suppress(conn, tenant, stopped, now)
        await self._log.store_fatigue_pauses(conn, tenant, new_pauses, now)
        await enqueue(conn, outbox)
        if deferred or stopped:
            log.info("send gate for account %s: %d deferred (%d new), %d suppressed", account.account_id,
                     len(deferred), announced, len(stopped),
                     extra={"tenant": tenant})
        return picked, len(outbox)

    async def _hold_unreadable(self, conn: AsyncConnection, account: Account, now: datetime) -> None:
        """No key decrypts the account's stored token (its key left SCRM_SECRETS_KEY on this replica, a damaged
        row): the account gets the TOKEN_UNREADABLE restriction (shown by GET /v1/accounts) and its due
        messages wait — until PATCH sets a new token, or a replica that can read the token lifts it."""
        await self._log.upsert_restrictions(conn, account.tenant, [account.account_id],
                                            [Restriction(TOKEN_UNREADABLE, "all", None, UNREADABLE_REASON)], now)
        held = await self._log.hold_due(conn, account, now, templates=None, until=now + UNTIL_LIFTED_RECHECK,
                                        reason=UNREADABLE_REASON, held_by=TOKEN_UNREADABLE)
        if held:
            self._metrics.held.labels(TOKEN_UNREADABLE).inc(held)
        log.error("no key of SCRM_SECRETS_KEY decrypts the access token of account %s: %d messages wait until "
                  "PATCH /v1/accounts/%s sets the token again", account.account_id, held, account.account_id,
                  extra={"tenant": account.tenant})

    async def _hold_restricted(self, conn: AsyncConnection, account: Account, now: datetime) -> None:
        """A restricted account sends no message of the kind restricted: due ones wait, the reason logged. A
        TOKEN_UNREADABLE restriction of an account whose token this replica reads (its key is back) is lifted."""
        restrictions = await self._log.restrictions(conn, account.tenant, account.account_id, now)
        if any(r.kind == TOKEN_UNREADABLE for r in restrictions):
            await self._log.lift_restrictions(conn, account.tenant, [account.account_id], [TOKEN_UNREADABLE], now)
            restrictions = [r for r in restrictions if r.kind != TOKEN_UNREADABLE]
            log.info("the access token of account %s is readable again: its messages go", account.account_id,
                     extra={"tenant": account.tenant})
        if not restrictions:
            return
        templates = blocked(restrictions, business_initiated=True, now=now)
        free_form = blocked(restrictions, business_initiated=False, now=now)
        holds: list[tuple[bool | None, Blocked]] = []
        if templates is not None and templates == free_form:
            holds.append((None, templates))
        else:
            holds += [(kind, b) for kind, b in ((True, templates), (False, free_form)) if b is not None]
        for kind, b in holds:
            until = b.until or now + UNTIL_LIFTED_RECHECK
            held = await self._log.hold_due(conn, account, now, templates=kind, until=until, reason=b.reason,
                                            held_by=b.kind)
            if held:
                self._metrics.held.labels(b.kind).inc(held)
                log.info("held %d messages of account %s: %s", held, account.account_id, b.reason,
                         extra={"tenant": account.tenant})

    async def _gate_templates(self, conn: AsyncConnection, account: Account, now: datetime) -> int:
        """Due messages whose template was paused, disabled, rejected or deleted since they were queued fail
        now with that reason (R-S2: never sent); the number failed (their events are in the outbox)."""
        rows = await self._log.due_for_unsendable_templates(conn, account, now)
        failed: list[dict[str, object]] = []
        outbox: list[OutboxRow] = []
        for key, raw, reason in rows:
            try:
                command = stored_command(raw)
            except ValidationError:
                continue  # left queued: the gate pass fails it with the reason it does not parse
            failed.append({"tenant": account.tenant, "key": key, "reason": reason})
            outbox.append(outcome_event(command, status="failed", at=now, reason=reason))
            self._metrics.outcomes.labels("refused", command.category).inc()
        await self._log.fail_queued(conn, failed)
        await enqueue(conn, outbox)
        if failed:
            log.info("failed %d messages of account %s: their templates may not be sent", len(failed),
                     account.account_id, extra={"tenant": account.tenant})
        return len(failed)

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
        held: list[dict[str, object]] = []
        failed: list[dict[str, object]] = []
        invalid: list[dict[str, object]] = []
        holds: dict[tuple[str, str], Restriction] = {}
        outbox: list[OutboxRow] = []
        for claimed, command, result in outcomes:
            key = {"tenant": claimed.tenant, "key": claimed.idempotency_key}
            late = claimed.late_retry_attempt is not None
            if isinstance(result, Accepted):
                sent.append(key | {"wamid": result.wamid, "at": now, "wa_id": result.wa_id,
                                   "message_status": result.message_status})
                outbox.append(outcome_event(command, status="sent", at=now, wamid=result.wamid, wa_id=result.wa_id,
                                            late_retry=late))
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
            if isinstance(result, NotSent):
                code, found, detail = None, meaning(None), result.reason
            else:
                assert isinstance(result, Rejected)
                code, found, detail = result.code, meaning(result.code, http_status=result.http_status), result.details
            decision = after_error(found, detail=detail, attempts=claimed.attempts,
                                   late_retry_attempt=claimed.late_retry_attempt,
                                   late_retry_code=claimed.late_retry_code, now=now, policy=self._retry,
                                   jitter=self._rng.random())
            if decision.action == "retry":
                retry.append(key | {"next": decision.at, "code": code, "reason": decision.reason,
                                    "late": decision.late_retry})
                self._metrics.outcomes.labels("late_retry" if decision.late_retry else "retry", command.category).inc()
                continue
            if decision.action == "hold":
                assert decision.at is not None
                held.append(key | {"next": decision.at, "code": code, "reason": decision.reason,
                                   "by": f"error:{code}"})
                holds[(claimed.tenant, command.account_id)] = error_hold(code, decision.at, decision.reason)
                self._metrics.outcomes.labels("held", command.category).inc()
                continue
            if decision.mark_invalid:
                invalid.append({"tenant": claimed.tenant, "phone": command.to, "code": code, "at": now,
                                "expires": now + self._invalid_ttl})
            if decision.opt_out:
                outbox.append(opt_out_event(command, at=now, detail=detail))
            failed.append(key | {"code": code, "reason": decision.reason})
            outbox.append(outcome_event(command, status="failed", at=now, code=code, reason=decision.reason))
            self._metrics.outcomes.labels("failed", command.category).inc()
        async with self._engine.begin() as conn:
            # Every row first, in key order, as the evidence consumer does: waits, never a deadlock between them.
            await self._log.lock_messages(conn, [(c.tenant, c.idempotency_key) for c, _, _ in outcomes])
            await self._log.mark_sent(conn, sent)
            await self._log.mark_retry(conn, retry)
            await self._log.mark_held(conn, held)
            await self._log.mark_failed(conn, failed)
            await self._log.mark_invalid_numbers(conn, invalid)
            for (tenant, account_id), restriction in holds.items():
                log.warning("holding account %s: %s", account_id, restriction.reason, extra={"tenant": tenant})
                await self._log.upsert_restrictions(conn, tenant, [account_id], [restriction], now)
            await enqueue(conn, outbox)
        if outbox:
            self._on_commit()


class EvidenceHandler:
    """Batch handler on `scrm.events.v1`: what Meta reports about our messages, accounts and templates.

    - `message.status`: any status naming our key proves the call went through (it settles doubt);
      a `failed` status follows the code table like a synchronous error (R-S7): 131026/131049 queue
      the one 24 h retry of that message (same idempotency key), the number is marked invalid only
      when that retry failed too, an account-level code holds the account.
    - `account.updated`: restrictions with their expiry and disablement are stored per account; the
      dispatcher holds the messages they block until they end.
    - `template.updated`: the template of the tenant's WABA follows at once — status, quality, category
      (R-S2: a message of a template that is not APPROVED fails with "template x (en) is paused").
    """

    def __init__(self, *, engine: AsyncEngine, log_: SendLog, metrics: SenderMetrics, clock: Clock,
                 retry: RetryPolicy, catalog: Catalog | None = None,
                 invalid_number_ttl: timedelta = DEFAULT_INVALID_NUMBER_TTL,
                 on_commit: Callable[[], None] = lambda: None, rng: random.Random | None = None) -> None:
        self._engine = engine
        self._log = log_
        self._metrics = metrics
        self._clock = clock
        self._retry = retry
        self._catalog = catalog
        self._templates_store = TemplateStore()
        self._reachability = ReachabilityStore()
        self._invalid_ttl = invalid_number_ttl
        self._on_commit = on_commit
        self._rng = rng or random.Random()

    async def __call__(self, items: Sequence[Item[EventRecord]]) -> None:
        statuses: list[tuple[str, MessageStatus]] = []
        accounts: list[tuple[str, AccountUpdated]] = []
        templates: list[tuple[str, TemplateUpdated]] = []
        for item in items:
            event = item.value.event
            if isinstance(event, MessageStatus) and event.data.idempotency_key:
                statuses.append((item.value.tenant, event))
            elif isinstance(event, AccountUpdated):
                accounts.append((item.value.tenant, event))
            elif isinstance(event, TemplateUpdated):
                templates.append((item.value.tenant, event))
        if not (statuses or accounts or templates):
            return
        now = self._clock.now()
        async with self._engine.begin() as conn:
            confirmed, requeued = await self._statuses(conn, statuses, now)
            released = await self._accounts(conn, accounts, now)
            changed, unpaused = await self._templates(conn, templates, now)
        if confirmed:
            self._metrics.doubt.labels("confirmed_by_webhook").inc(confirmed)
        if requeued or released or unpaused:
            self._on_commit()

    async def _statuses(self, conn: AsyncConnection, statuses: list[tuple[str, MessageStatus]],
                        now: datetime) -> tuple[int, int]:
        await self._marketing_limits(conn, statuses, now)
        accepted: list[dict[str, object]] = [
            {"tenant": tenant, "key": e.data.idempotency_key, "wamid": e.data.message_id, "at": e.occurred_at}
            for tenant, e in statuses if e.data.message_id]
        # The rows these statuses may change, locked first in key order as the dispatcher's settlement does.
        await self._log.lock_messages(conn, [(tenant, e.data.idempotency_key) for tenant, e in statuses
                                             if e.data.idempotency_key])
        confirmed = await self._log.confirm_by_evidence(conn, accepted)
        await self._log.mark_seen(conn, [
            {"tenant": tenant, "key": e.data.idempotency_key, "status": e.data.status, "at": e.occurred_at}
            for tenant, e in statuses if e.data.status in ("delivered", "read")])
        requeued = 0
        for tenant, event in statuses:
            if event.data.status == "failed" and event.data.message_id and event.data.idempotency_key:
                requeued += await self._failed(conn, tenant, event, now)
        # 131049's "then once": a settled marketing message lets the contact's next one be looked at now.
        requeued += await self._log.wake_after_meta_limit(conn, [
            (tenant, e.data.idempotency_key) for tenant, e in statuses
            if e.data.idempotency_key and e.data.status in ("delivered", "read", "failed")], now)
        return confirmed, requeued

    async def _marketing_limits(self, conn: AsyncConnection, statuses: list[tuple[str, MessageStatus]],
                                now: datetime) -> None:
        """131049 (Meta's per-user marketing limit): the contact's number gets no marketing for 24 h (the gate's
        META-131049; the failed message itself takes its one 24 h retry, R-S7). Recorded before any message row is
        locked: the reachability consumer locks a number's record before its messages, and so does this."""
        blocks: list[tuple[str, str, datetime]] = []
        for tenant, event in statuses:
            data = event.data
            if data.status != "failed" or data.error_code != META_MARKETING_LIMIT or not data.idempotency_key:
                continue
            number = number_of(event.contact)
            if number is None:  # a status naming no recipient: the number the message went to
                row = await self._log.message(conn, tenant, data.idempotency_key)
                number = match_key(str(row["to_phone"])) if row is not None else None
            if number:
                blocks.append((tenant, number, event.occurred_at + MARKETING_LIMIT_PAUSE))
        await self._reachability.block_marketing(conn, blocks, now)

    async def _failed(self, conn: AsyncConnection, tenant: str, event: MessageStatus, now: datetime) -> int:
        """Settle a `failed` status by the code table; 1 when the message was queued again."""
        data = event.data
        assert data.idempotency_key is not None and data.message_id is not None
        row = await self._log.logged_for_update(conn, tenant, data.idempotency_key)
        if (row is None or row.attempts == 0 or row.state not in ("sending", "sent")
                or data.message_id in row.superseded_wamids or (row.wamid and row.wamid != data.message_id)):
            return 0  # not ours, already settled, or about an earlier attempt: old news
        found = meaning(data.error_code, asynchronous=True)
        decision = after_error(found, detail=data.error_reason or "", attempts=row.attempts,
                               late_retry_attempt=row.late_retry_attempt, late_retry_code=row.late_retry_code,
                               now=now, policy=self._retry, jitter=self._rng.random())
        if decision.action == "fail":
            await self._log.fail_by_provider(conn, tenant=tenant, key=row.idempotency_key, code=data.error_code,
                                             reason=decision.reason)
            if decision.mark_invalid:
                await self._log.mark_invalid_numbers(conn, [{
                    "tenant": tenant, "phone": row.to_phone, "code": data.error_code, "at": now,
                    "expires": now + self._invalid_ttl}])
            return 0
        assert decision.at is not None
        held_by = f"error:{data.error_code}" if decision.action == "hold" else None
        await self._log.requeue_after_provider_failure(
            conn, tenant=tenant, key=row.idempotency_key, failed_wamid=data.message_id, next_at=decision.at,
            code=data.error_code, reason=decision.reason, late=decision.late_retry, held_by=held_by)
        if decision.action == "hold":
            await self._log.upsert_restrictions(conn, tenant, [row.account_id],
                                                [error_hold(data.error_code, decision.at, decision.reason)], now)
        self._metrics.outcomes.labels("late_retry" if decision.late_retry else decision.action, "provider").inc()
        return 1

    async def _accounts(self, conn: AsyncConnection, updates: list[tuple[str, AccountUpdated]],
                        now: datetime) -> int:
        released = 0
        for tenant, event in updates:
            data = event.data
            change = change_from_update(event=data.event, ban_state=data.ban_state,
                                        restrictions=[(r.type, r.expires_at) for r in data.restrictions],
                                        detail=data.detail, now=now)
            if not change.upsert and not change.lift:
                continue
            ids = await self._log.accounts_addressed(conn, tenant, data.account_id, data.waba_id)
            if not ids:
                continue
            await self._log.upsert_restrictions(conn, tenant, ids, change.upsert, now)
            # A restriction stored again may end sooner: its messages are looked at again now.
            released += await self._log.release_held(conn, tenant, ids, [r.kind for r in change.upsert], now)
            released += await self._log.lift_restrictions(conn, tenant, ids, change.lift, now)
            self._metrics.account_updates.labels("account").inc()
            log.warning("account update for %s: restricted %s, lifted %s", ",".join(ids),
                        [(r.kind, r.until.isoformat() if r.until else None) for r in change.upsert],
                        list(change.lift), extra={"tenant": tenant})
        return released

    async def _templates(self, conn: AsyncConnection, updates: list[tuple[str, TemplateUpdated]],
                         now: datetime) -> tuple[set[str], int]:
        """Follow template webhooks on the templates of the tenant's WABAs: status (R-S2: a paused, disabled or
        rejected template's next message fails), quality and category; the tenants changed and 0 (nothing
        waits for a template any more)."""
        changed: set[str] = set()
        for tenant, event in updates:
            data = event.data
            if not data.name:
                continue
            status = status_after_event(data.event)
            category = data.category.lower() if data.category and data.event != "CATEGORY_UPDATE_PENDING" else None
            quality = data.quality.upper() if data.quality else None
            if status is None and category is None and quality is None:
                continue
            rows = await self._templates_store.apply_update(
                conn, tenant=tenant, waba_id=data.waba_id, name=data.name, language=data.language, status=status,
                quality=quality, category=category, reason=data.reason, at=now)
            if rows:
                changed.add(tenant)
                self._metrics.account_updates.labels("template").inc()
                log.info("template %s (%s) of WABA %s: status %s, quality %s, category %s", data.name,
                         data.language or "every language", data.waba_id or "*", status or "unchanged",
                         quality or "unchanged", category or "unchanged", extra={"tenant": tenant})
            else:
                log.info("template update for %s (%s) of WABA %s changed nothing (unknown or not new)", data.name,
                         data.language or "every language", data.waba_id or "*", extra={"tenant": tenant})
        return changed, 0
