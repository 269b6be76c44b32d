"""Load → domain → persist: one transaction per consumed batch turns events into report counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from reporting.domain.clicks import ClickSeen, click_cell, click_delta, click_seen, first_clicks
from reporting.domain.gate import ANY_RULE, GateCell
from reporting.domain.ledger import Ledger, MessageLookup, MessageRef, Name, lookup_for
from reporting.domain.messages import (
    Cell,
    InboundSeen,
    Message,
    OrderPaid,
    Reply,
    RevenueCell,
    StatusSeen,
    add_into,
    delta,
    gate_delta,
    inbound_seen,
    order_cells,
    order_paid,
    replies_in,
    status_seen,
)
from reporting.domain.policy import ReportPolicy
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, LinkClicked, MessageInbound, MessageStatus, PaymentSucceeded
from scrm_common.kafka.consumer import Item

EventRef = tuple[str, str]  # (tenant, event_id)
RecipientRef = tuple[str, str]  # (tenant, recipient key: the match key of the person's WhatsApp number)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message.inbound of any type from a known number: what reply attribution needs."""

    tenant: str
    seen: InboundSeen


@dataclass(frozen=True, slots=True)
class RecipientWindow:
    """A recipient's history between `lo` and `hi` (message sent times and inbound times)."""

    tenant: str
    recipient: str
    lo: datetime
    hi: datetime


@dataclass(slots=True)
class ReportChanges:
    """What one transaction writes."""

    inserted: list[tuple[str, Message]] = field(default_factory=list)
    updated: list[tuple[str, Message]] = field(default_factory=list)
    deleted: list[MessageRef] = field(default_factory=list)  # combined into another row (ledger.Ledger)
    inbounds: list[Inbound] = field(default_factory=list)
    counts: dict[tuple[str, Cell], int] = field(default_factory=dict)
    gate_counts: dict[tuple[str, GateCell], int] = field(default_factory=dict)  # reporting.domain.gate
    revenue: dict[tuple[str, RevenueCell], Decimal] = field(default_factory=dict)
    # Not written; observed for the metrics: (event type, reason) of events that changed nothing,
    # and the statuses of messages the platform did not send.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


class ConcurrentWrite(Exception):
    """Another instance created the same row first; the batch is retried and then sees it."""


class ReportUnit(Protocol):
    """One transaction against the report store."""

    async def claim(self, events: Sequence[EventRef]) -> set[EventRef]:
        """Record events in the inbox; return those not recorded before."""

    async def messages(self, lookup: MessageLookup) -> dict[MessageRef, Message]:
        """Lock and return the stored messages with one of `lookup`'s row keys, idempotency keys or wamids
        (a wamid names a row by its key, its first attempt's or its latest attempt's wamid)."""

    async def recipient_history(self, windows: Sequence[RecipientWindow]
                                ) -> tuple[dict[MessageRef, Message], dict[RecipientRef, dict[str, Reply]]]:
        """Lock and return the messages sent to each recipient within its window (by `reply_from`), and its
        inbound messages received within it (by event id)."""

    async def replies_naming(self, wamids: set[Name]) -> dict[RecipientRef, dict[str, Reply]]:
        """The stored inbound messages (by recipient and event id) whose context names one of `wamids`."""

    async def add_orders(self, orders: Sequence[tuple[str, OrderPaid]]) -> list[tuple[str, OrderPaid]]:
        """Record paid orders; return those not recorded before (an order counts once, R-T2.4)."""

    async def add_clicks(self, clicks: Sequence[tuple[str, ClickSeen]]
                         ) -> list[tuple[str, ClickSeen | None, ClickSeen]]:
        """Record each message's first click (`clicks`: at most one per tenant and idempotency key); return
        (tenant, first click before, first click now) of the messages whose first click changed: clicked for
        the first time (before None), or an earlier click than the one recorded (`clicks.first_click`)."""

    async def save(self, changes: ReportChanges) -> None:
        """Write the changes (deletions first); raise ConcurrentWrite when a message to insert exists
        already, by its key or by its idempotency key."""


class ReportStore(Protocol):
    """Where report facts and aggregates live."""

    def unit(self) -> AbstractAsyncContextManager[ReportUnit]:
        """A transaction: committed when the block ends normally, rolled back otherwise."""

    async def overview_rows(self, tenant: str, start: date, end: date) -> tuple[
            list[tuple[date, str | None, str, int]], list[tuple[date, str | None, str, Decimal]]]:
        """Stored counts and revenue of `tenant` between two days, inclusive."""

    async def gate_rows(self, tenant: str, start: date, end: date, flow: str | None
                        ) -> list[tuple[date, str | None, str, str, int]]:
        """Stored gate counts (day, flow, rule, metric, value) of `tenant` between two days, inclusive, of
        one flow when `flow` is given (`reporting.domain.gate`)."""

    async def ping(self) -> bool:
        """The store answers."""


class ReportingMetrics:
    """Business counters of reporting."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counted = Counter("scrm_reporting_counted_total",
                               "Statuses, clicked messages and purchases newly counted in the reports", ["metric"],
                               registry=registry)
        self.applied = Counter("scrm_reporting_events_applied_total", "Events applied to reports", ["type"],
                               registry=registry)
        self.duplicates = Counter("scrm_reporting_events_duplicate_total",
                                  "Events skipped because they were applied before", registry=registry)
        self.skipped = Counter("scrm_reporting_events_skipped_total",
                               "Events read but not applicable, by type and reason", ["type", "reason"],
                               registry=registry)
        self.foreign = Counter("scrm_reporting_foreign_statuses_total",
                               "Statuses of messages the platform did not send (kept apart, not counted)",
                               ["status"], registry=registry)


class ApplyEvents:
    """The consumer's handler: statuses, replies, clicks and orders become daily counts per flow."""

    def __init__(self, *, store: ReportStore, policy: ReportPolicy, metrics: ReportingMetrics) -> None:
        self._store = store
        self._policy = policy
        self._metrics = metrics

    async def __call__(self, items: Sequence[Item[EventRecord]]) -> None:
        records = [item.value for item in items]
        events: list[tuple[str, Event]] = []
        changes = ReportChanges()
        async with self._store.unit() as unit:
            fresh = await unit.claim([(r.tenant, r.event.event_id) for r in records])
            for r in records:
                ref = (r.tenant, r.event.event_id)
                if ref in fresh:
                    fresh.discard(ref)  # the same event twice in one batch applies once
                    events.append((r.tenant, r.event))
            if events:
                changes = await self._apply(unit, events)
                await unit.save(changes)
        for _, event in events:
            self._metrics.applied.labels(event.type).inc()
        for kind, reason in changes.skipped:
            self._metrics.skipped.labels(kind, reason).inc()
        for status in changes.foreign:
            self._metrics.foreign.labels(status).inc()
        self._metrics.duplicates.inc(len(records) - len(events))
        per_metric: dict[str, int] = defaultdict(int)
        for (_, (_, _, metric)), n in changes.counts.items():
            per_metric[metric.value] += n
        for (_, (_, _, rule, gate_metric)), n in changes.gate_counts.items():
            if rule == ANY_RULE:  # each message once, not once per rule
                per_metric[gate_metric.value] += n
        for name, n in per_metric.items():
            if n > 0:
                self._metrics.counted.labels(name).inc(n)

    async def _apply(self, unit: ReportUnit, events: list[tuple[str, Event]]) -> ReportChanges:
        statuses: list[tuple[str, StatusSeen]] = []
        orders: list[tuple[str, OrderPaid]] = []
        clicks: list[tuple[str, ClickSeen]] = []
        changes = ReportChanges()
        for tenant, event in events:
            match event:
                case MessageStatus():
                    seen = status_seen(event)
                    if seen is not None:
                        statuses.append((tenant, seen))
                    else:
                        changes.skipped.append((event.type, "no_message_id"))
                case MessageInbound():  # any type: text, image, reaction, button … is a reply
                    reply = inbound_seen(event)
                    if reply is not None:
                        changes.inbounds.append(Inbound(tenant, reply))
                    else:
                        changes.skipped.append((event.type, "unknown_sender"))
                case LinkClicked():
                    click = click_seen(event)
                    if click is not None:
                        clicks.append((tenant, click))
                    else:  # names no message (an older event): counts per event
                        _add(changes.counts, tenant, {click_cell(event): 1})
                case PaymentSucceeded():
                    orders.append((tenant, order_paid(event)))
                case _:
                    changes.skipped.append((event.type, "not_reported"))

        before = await unit.messages(lookup_for(statuses)) if statuses else {}
        ledger = Ledger(before)
        placed = [(ledger.record(tenant, seen), seen.status) for tenant, seen in statuses]
        current, deleted = ledger.messages, ledger.deleted
        changes.foreign = [status for ref, status in placed if not current[ledger.row(ref)].platform]
        await self._attribute_replies(unit, before, current, deleted, changes.inbounds)

        for ref in sorted(current.keys() | deleted):
            old, message = before.get(ref), current.get(ref)
            if old == message:  # unchanged, or started and combined away within this batch
                continue
            if message is None:
                changes.deleted.append(ref)
            elif old is None:
                changes.inserted.append((ref[0], message))
            else:
                changes.updated.append((ref[0], message))
            _add(changes.counts, ref[0], delta(old, message))
            add_into(changes.gate_counts, {(ref[0], cell): n for cell, n in gate_delta(old, message).items()})
        for tenant, order in await unit.add_orders(_distinct(orders)) if orders else []:
            count_cell, revenue_cell = order_cells(order)
            _add(changes.counts, tenant, {count_cell: 1})
            key = (tenant, revenue_cell)
            changes.revenue[key] = changes.revenue.get(key, Decimal(0)) + order.amount
        for tenant, before_click, first in await unit.add_clicks(first_clicks(clicks)) if clicks else []:
            _add(changes.counts, tenant, click_delta(before_click, first))  # each message once (R-R1)
        return changes

    async def _attribute_replies(self, unit: ReportUnit, before: dict[MessageRef, Message],
                                 current: dict[MessageRef, Message], deleted: set[MessageRef],
                                 inbounds: list[Inbound]) -> None:
        """Recompute `replied_at` of every message a changed message or a new inbound can affect.

        A reply naming a message (`context.id`) credits it whenever it was sent, so three things widen
        what is recomputed beyond the 24 h windows: a new inbound's named message; older inbounds
        naming a message that changed (they leave the message they were credited to by the
        latest-message rule); and, inside the windows, every message an inbound names and every
        inbound naming a message (`replies_in` needs them to tell named replies from the others).
        """
        window = self._policy.reply_window
        touched: dict[RecipientRef, list[datetime]] = defaultdict(list)
        changed: set[Name] = set()
        for ref in current.keys() | deleted:
            old, message = before.get(ref), current.get(ref)
            if old == message:
                continue
            moved = _reply_facts(old) != _reply_facts(message)  # what a named reply finds a message by
            for m in (old, message):
                if m is not None:
                    if moved:
                        changed.update((ref[0], w) for w in m.wamids)
                    if m.recipient is not None and m.reply_from is not None:
                        touched[(ref[0], m.recipient)].append(m.reply_from)
        for inbound in inbounds:
            touched[(inbound.tenant, inbound.seen.recipient)].append(inbound.seen.at)
        if not touched and not changed:
            return
        await self._load_named(unit, {(i.tenant, i.seen.context_message_id) for i in inbounds
                                      if i.seen.context_message_id}, before, current, deleted)
        index = _by_wamid(current)
        for inbound in inbounds:
            named = _named(index, inbound.tenant, inbound.seen.context_message_id, inbound.seen.recipient)
            if named is not None and named.reply_from is not None:
                touched[(inbound.tenant, inbound.seen.recipient)].append(named.reply_from)
        if changed:
            for ref, replies in (await unit.replies_naming(changed)).items():
                touched[ref].extend(r.at for r in replies.values())
        if not touched:
            return

        windows = [RecipientWindow(t, r, min(ts) - window, max(ts) + window)
                   for (t, r), ts in sorted(touched.items())]
        nearby, history = await unit.recipient_history(windows)
        for ref, message in nearby.items():
            if ref not in current and ref not in deleted:
                before[ref] = current[ref] = message
        for inbound in inbounds:
            history.setdefault((inbound.tenant, inbound.seen.recipient), {})[inbound.seen.event_id] = \
                inbound.seen.reply
        await self._load_named(unit, {(t, r.context) for (t, _), replies in history.items()
                                      for r in replies.values() if r.context}, before, current, deleted)
        in_play = {(t, w) for (t, _), m in current.items() if m.recipient is not None
                   and (t, m.recipient) in touched for w in m.wamids}
        index = _by_wamid(current)
        for (tenant, recipient), replies in (await unit.replies_naming(in_play) if in_play else {}).items():
            for event_id, reply in replies.items():
                if _named(index, tenant, reply.context, recipient) is not None:
                    history.setdefault((tenant, recipient), {})[event_id] = reply

        by_recipient: dict[RecipientRef, list[Message]] = defaultdict(list)
        for (tenant, _), message in current.items():
            if message.recipient is not None:
                by_recipient[(tenant, message.recipient)].append(message)
        for (tenant, recipient), times in touched.items():
            replied = replies_in(by_recipient[(tenant, recipient)], history.get((tenant, recipient), {}).values(),
                                 min(times) - window, max(times), window)
            for key, at in replied.items():
                ref = (tenant, key)
                if current[ref].replied_at != at:
                    current[ref] = current[ref].model_copy(update={"replied_at": at})

    async def _load_named(self, unit: ReportUnit, names: set[Name], before: dict[MessageRef, Message],
                          current: dict[MessageRef, Message], deleted: set[MessageRef]) -> None:
        """Bring the messages `names` (tenant, wamid) name into the batch, unless it holds them already."""
        known = {(t, w) for (t, _), m in current.items() for w in m.wamids}
        missing = frozenset(names - known)
        if not missing:
            return
        for ref, message in (await unit.messages(MessageLookup(wamids=missing))).items():
            if ref not in current and ref not in deleted:
                before[ref] = current[ref] = message


def _reply_facts(m: Message | None) -> tuple[object, ...] | None:
    return None if m is None else (m.wamids, m.recipient, m.reply_from)


def _by_wamid(messages: dict[MessageRef, Message]) -> dict[Name, list[Message]]:
    out: dict[Name, list[Message]] = defaultdict(list)
    for (tenant, _), message in messages.items():
        for wamid in message.wamids:
            out[(tenant, wamid)].append(message)
    return out


def _named(index: dict[Name, list[Message]], tenant: str, wamid: str | None, recipient: str) -> Message | None:
    """The message of the batch `wamid` names, when it was sent to `recipient` (a named reply's message)."""
    if not wamid:
        return None
    return next((m for m in index.get((tenant, wamid), ()) if m.recipient == recipient), None)


def _add(total: dict[tuple[str, Cell], int], tenant: str, cells: dict[Cell, int]) -> None:
    add_into(total, {(tenant, cell): n for cell, n in cells.items()})


def _distinct(orders: list[tuple[str, OrderPaid]]) -> list[tuple[str, OrderPaid]]:
    first: dict[tuple[str, str], tuple[str, OrderPaid]] = {}
    for tenant, order in orders:
        first.setdefault((tenant, order.order_id), (tenant, order))
    return list(first.values())
