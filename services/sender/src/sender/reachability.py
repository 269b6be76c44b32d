"""The reachability handler (in the sender's `sender-evidence` consumer group): what the send gate knows about each
contact, kept from `scrm.events.v1`.

Per (tenant, number) — `number` = `scrm_common.identity.match_key(contact.phone or "+" + contact.wa_id)`, one key
for a phone and its WhatsApp `wa_id` form — the handler keeps the record of `domain.reachability`:

- `contact.created` / `contact.updated`: the contact's own IANA zone, else one derived from the number
  (`domain.gate.zone`, `zone_derived`), `locale`, and `preferences` when the event carries them. An event naming
  no phone and no wa_id (only an external id) cannot be keyed by number and is skipped: the send command's own
  `timezone` (stamped by the deciding service, which knows the contact by its key) covers the zone then.
- `message.inbound`: `last_inbound_at` (the 24 h window) and a row of `inbound_log` (kept 35 days). When the
  whole message is a stop or start word (`domain.gate.opt_out.stop_intent`, R-S6), in this transaction:
  (a) the record's marketing choice changes (newest wins by its own time); (b) for a stop, every queued
  marketing message to the number is `suppressed` with rule `R-S6` and a `message.status` `suppressed` is
  published for each; (c) `contact.marketing_preference_changed` (source `keyword`) is published so the
  trigger-engine and the segmenter learn it; (d) a short confirmation in the contact's language is queued as
  a free-form service reply from the account the message reached (skipped, with a log line, when the inbound
  names no account or the tenant has no such account).
- `contact.marketing_preference_changed` (Meta's `user_preferences`, error 131050, or our own `keyword` event
  coming back): (a) and, for a stop, (b); no confirmation (Meta shows its own UI). `resume`/`signup`
  re-subscribe.
- `message.status` `failed` with 131049 (Meta's per-user marketing limit): no marketing to the number for 24 h
  from the status's time (the R-S7 code table already queues that message's one retry after 24 h).

Redelivery and replays change nothing twice: every record change is idempotent (latest inbound by max, the
marketing choice only when newer than the stored one, the 131049 block by max); the effects (b)–(d) follow
only a choice applied now; inbound_log and the confirmation's send-log row are keyed by event id; the
published events have ids derived from the inputs. Everything of a batch is one transaction with a few batched
statements; only `REACHABILITY_EVENTS` are decoded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.clock import Clock
from scrm_common.contracts import topics
from scrm_common.contracts.commands import SendMessage
from scrm_common.contracts.envelope import EventRecord, encode_event
from scrm_common.contracts.events import (
    ContactCreated,
    ContactNumberChanged,
    ContactUpdated,
    MarketingPreferenceChanged,
    MarketingPreferenceData,
    MessageInbound,
)
from scrm_common.db.outbox import OutboxRow, enqueue
from scrm_common.identity import match_key
from scrm_common.kafka.consumer import Item
from sender.adapters.db import SendLog
from sender.adapters.reachability import Key, ReachabilityStore
from sender.domain import reachability as domain
from sender.domain.gate.opt_out import Intent, confirmation, stop_intent
from sender.handlers import outcome_event, stored_command

log = logging.getLogger(__name__)

# `message.status` (131049) is not read here: the evidence consumer parses every status anyway and records the
# block (`EvidenceHandler`), so this group never parses the bulk of the log.
REACHABILITY_EVENTS: frozenset[str] = frozenset({
    "contact.created", "contact.updated", "message.inbound", "contact.marketing_preference_changed",
    "contact.number_changed",
})
OPT_OUT_RULE = "R-S6"
OPT_OUT_REASON = "the contact opted out of marketing (STOP)"
CONFIRMATION_FLOW = "opt_out"
# The customer-service window the stop/start message just opened (CLOUD-API §6.1): the confirmation expires then.
WINDOW = timedelta(hours=24)


number_of = domain.number_of


@dataclass(frozen=True, slots=True)
class _Keyword:
    """A stop/start word applied now: what (c) and (d) need."""

    key: Key
    intent: Intent
    record: EventRecord
    event: MessageInbound


class ReachabilityMetrics:
    """Events applied to reachability records by kind, and what R-S6 did."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.applied = Counter("scrm_sender_reachability_events_total",
                               "Events applied to the contacts' reachability records, by kind", ["kind"],
                               registry=registry)
        self.opt_outs = Counter("scrm_sender_opt_out_changes_total",
                                "Marketing choices applied (R-S6), by choice and source", ["choice", "source"],
                                registry=registry)
        self.suppressed = Counter("scrm_sender_opt_out_suppressed_total",
                                  "Queued marketing messages suppressed at once by an opt-out (R-S6)",
                                  registry=registry)
        self.confirmations = Counter("scrm_sender_opt_out_confirmations_total",
                                     "Opt-out/opt-in confirmations queued, or skipped by reason", ["result"],
                                     registry=registry)


class ReachabilityHandler:
    """Batch handler for the sender's `sender-evidence` group on `scrm.events.v1` (see the module docstring).

    `send_log` queues confirmations and locks messages like the dispatcher; `clock` stamps the rows written
    (`updated_at`, `suppressed_at`, the statuses' time); `on_commit` is called after a commit that queued a
    confirmation or published anything (wake the dispatcher and the outbox relay).
    """

    def __init__(self, *, engine: AsyncEngine, send_log: SendLog, clock: Clock, registry: CollectorRegistry,
                 on_commit: Callable[[], None], store: ReachabilityStore | None = None) -> None:
        self._engine = engine
        self._log = send_log
        self._clock = clock
        self._on_commit = on_commit
        self._store = store or ReachabilityStore()
        self._metrics = ReachabilityMetrics(registry)

    async def __call__(self, items: Sequence[Item[EventRecord]]) -> None:
        relevant = [(item.value, number) for item in items
                    if (number := self._number(item.value)) is not None]
        if not relevant:
            return
        now = self._clock.now()
        moves = {id(r): (r.tenant, old) for r, _ in relevant
                 if isinstance(r.event, ContactNumberChanged) and (old := match_key(f"+{r.event.data.old_wa_id}"))}
        async with self._engine.begin() as conn:
            records = await self._store.lock(conn, {(r.tenant, n) for r, n in relevant} | set(moves.values()), now)
            before = dict(records)
            inbound: list[tuple[str, str, datetime, str]] = []
            keywords: list[_Keyword] = []
            stopped: set[Key] = set()
            for record, number in relevant:
                key = (record.tenant, number)
                if id(record) in moves:  # the customer's word moves with them to the new number
                    moved = domain.with_number_change(records[key], records[moves[id(record)]])
                    if moved.opted_out and not records[key].opted_out:
                        stopped.add(key)
                    records[key] = moved
                    continue
                records[key] = self._apply(records[key], record, number, inbound, keywords, stopped)
            await self._store.save(conn, {k: r for k, r in records.items() if r != before[k]}, now)
            await self._store.log_inbound(conn, inbound, now - domain.INBOUND_KEPT)
            outbox = await self._suppress(conn, sorted(k for k in stopped if records[k].opted_out), now)
            outbox += [self._preference_event(k, now) for k in keywords]
            queued = await self._confirm(conn, keywords, records, now)
            await enqueue(conn, outbox)
        if outbox or queued:
            self._on_commit()

    @staticmethod
    def _number(record: EventRecord) -> str | None:
        event = record.event
        if isinstance(event, ContactNumberChanged):
            return match_key(f"+{event.data.new_wa_id}") or None
        if not isinstance(event, ContactCreated | ContactUpdated | MessageInbound | MarketingPreferenceChanged):
            return None
        return number_of(event.contact)

    def _apply(self, current: domain.Record, record: EventRecord, number: str,
               inbound: list[tuple[str, str, datetime, str]], keywords: list[_Keyword],
               stopped: set[Key]) -> domain.Record:
        """One event's change of the record; collects the inbound log rows, applied keywords and stops."""
        event = record.event
        key = (record.tenant, number)
        if isinstance(event, ContactCreated | ContactUpdated):
            self._metrics.applied.labels("profile").inc()
            carried = "preferences" in event.data.model_fields_set
            return domain.with_profile(
                current, number=number, timezone=event.contact.timezone, locale=event.contact.locale,
                preferences=event.data.preferences.model_dump(mode="json") if carried else None)
        if isinstance(event, MessageInbound):
            self._metrics.applied.labels("inbound").inc()
            inbound.append((record.tenant, number, event.occurred_at, event.event_id))
            # Only a message WhatsApp delivered (it carries the wamid WhatsApp gave it) opens WhatsApp's 24 h window;
            # a chat line a shop posts itself (no message id) tells intent, but WhatsApp would refuse a free-form
            # reply to it with 131047.
            updated = domain.with_inbound(current, event.occurred_at) if event.data.message_id else current
            intent = stop_intent(event.data.text) if event.data.text is not None else None
            if intent is None:
                return updated
            updated, applied = domain.with_marketing_choice(
                updated, choice="stop" if intent == "stop" else "resume", source="keyword", at=event.occurred_at)
            if applied:
                self._metrics.opt_outs.labels(intent, "keyword").inc()
                keywords.append(_Keyword(key, intent, record, event))
                if intent == "stop":
                    stopped.add(key)
            return updated
        if isinstance(event, MarketingPreferenceChanged):
            self._metrics.applied.labels("preference").inc()
            updated, applied = domain.with_marketing_choice(
                current, choice=event.data.value, source=event.data.source, at=event.occurred_at)
            if applied:
                self._metrics.opt_outs.labels(event.data.value, event.data.source).inc()
                if event.data.value == "stop":
                    stopped.add(key)
            return updated
        raise AssertionError(f"not an event of this group: {event.type}")  # _number filtered it

    async def _suppress(self, conn: AsyncConnection, numbers: list[Key], now: datetime) -> list[OutboxRow]:
        """(b) Every queued marketing message to `numbers` suppressed with R-S6, rows locked first in
        (tenant, key) order exactly as the dispatcher's settlement and the evidence consumer lock them."""
        if not numbers:
            return []
        keys = await self._store.queued_marketing(conn, numbers)
        if not keys:
            return []
        await self._log.lock_messages(conn, keys)
        suppressed = await self._store.suppress(conn, keys, rule=OPT_OUT_RULE, reason=OPT_OUT_REASON, now=now)
        outbox: list[OutboxRow] = []
        for tenant, command in suppressed:
            try:  # JSON mode, as the dispatcher reads it: stored times ("08:00:00") are JSON text
                parsed = stored_command(command)
            except ValidationError as exc:  # a row queued by an older release, say: suppressed, told in the log
                log.warning("suppressed a queued marketing message whose command no longer parses: %s", exc,
                            extra={"tenant": tenant})
                continue
            outbox.append(outcome_event(parsed, status="suppressed", at=now, reason=OPT_OUT_REASON,
                                        rule=OPT_OUT_RULE))
        self._metrics.suppressed.inc(len(suppressed))
        log.info("opt-out: suppressed %d queued marketing messages to %d numbers", len(suppressed), len(numbers))
        return outbox

    @staticmethod
    def _preference_event(keyword: _Keyword, now: datetime) -> OutboxRow:
        """(c) `contact.marketing_preference_changed` (source `keyword`) for a stop/start word; its id derives
        from the inbound's, and its time is the inbound's own, so coming back to this group it changes nothing."""
        inbound = keyword.event
        digest = hashlib.sha256(f"{keyword.record.tenant}|{inbound.event_id}".encode()).hexdigest()[:32]
        event = MarketingPreferenceChanged(
            event_id=f"keyword:{digest}", type="contact.marketing_preference_changed",
            occurred_at=inbound.occurred_at, contact=inbound.contact,
            data=MarketingPreferenceData(value="stop" if keyword.intent == "stop" else "resume", source="keyword",
                                         account_id=inbound.data.account_id,
                                         detail=f"the customer wrote {(inbound.data.text or '').strip()[:200]!r}"))
        key, value, headers = encode_event(keyword.record.tenant, event, ingested_at=now,
                                           correlation_id=keyword.record.correlation_id)
        return OutboxRow(topics.EVENTS, key, value, [(k, v.decode()) for k, v in headers])

    async def _confirm(self, conn: AsyncConnection, keywords: list[_Keyword], records: dict[Key, domain.Record],
                       now: datetime) -> int:
        """(d) Queue the confirmation of each applied stop/start word as a free-form service reply inside the
        window the word opened (expires when it closes); the number queued now (0 on a replay)."""
        if not keywords:
            return 0
        wanted = {(k.record.tenant, k.event.data.account_id) for k in keywords if k.event.data.account_id}
        known = await self._log.known_accounts(conn, wanted)
        rows: list[dict[str, object]] = []
        for k in keywords:
            tenant, inbound = k.record.tenant, k.event
            account_id = inbound.data.account_id
            skip = ("the inbound message names no account" if account_id is None
                    else "it did not come through WhatsApp (no message id): no window is open for a reply"
                    if inbound.data.message_id is None
                    else f"the tenant has no account {account_id}" if (tenant, account_id) not in known
                    else "the window it opened has closed" if inbound.occurred_at + WINDOW <= now else None)
            command = None if skip else self._confirmation(k, records[k.key], now)
            if command is None:
                reason = skip or "the contact's number is not one a message can be sent to"
                log.info("no %s confirmation for inbound %s: %s", k.intent, inbound.event_id, reason,
                         extra={"tenant": tenant})
                self._metrics.confirmations.labels("skipped").inc()
                continue
            rows.append({
                "tenant": tenant, "idempotency_key": command.idempotency_key, "account_id": command.account_id,
                "flow": command.flow, "category": command.category, "contact_key": command.contact_key,
                "to_phone": command.to, "command": command.model_dump_json(exclude_none=True), "state": "queued",
                "next_attempt_at": now, "queued_at": now, "event_ingested_at": command.event_ingested_at,
                "error_reason": None, "expires_at": command.expires_at})
        new = await self._log.record(conn, rows)
        self._metrics.confirmations.labels("queued").inc(len(new))
        return len(new)

    @staticmethod
    def _confirmation(keyword: _Keyword, record: domain.Record, now: datetime) -> SendMessage | None:
        """The confirmation's send command, in the record's language (English when none is known); None when
        the contact's number does not validate as a phone number."""
        inbound, tenant = keyword.event, keyword.record.tenant
        contact = inbound.contact
        to = contact.phone or (f"+{contact.wa_id}" if contact.wa_id else None)
        assert inbound.data.account_id is not None
        try:
            return SendMessage(
                idempotency_key=f"{tenant}|{CONFIRMATION_FLOW}|{inbound.event_id}", tenant=tenant,
                account_id=inbound.data.account_id, flow=CONFIRMATION_FLOW, category="service",
                contact_key=contact.key, to=to or "", text=confirmation(record.locale, keyword.intent),
                event_id=inbound.event_id, event_occurred_at=inbound.occurred_at,
                event_ingested_at=keyword.record.ingested_at, decided_at=now,
                correlation_id=keyword.record.correlation_id, expires_at=inbound.occurred_at + WINDOW,
                timezone=record.timezone)
        except ValidationError:
            return None
