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

from reporting.domain.messages import (
    Cell,
    Message,
    OrderPaid,
    RevenueCell,
    StatusSeen,
    add_into,
    click_cell,
    delta,
    observe,
    order_cells,
    replies_in,
    status_seen,
)
from reporting.domain.policy import ReportPolicy
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, LinkClicked, MessageInbound, MessageStatus, PaymentSucceeded
from scrm_common.kafka.consumer import Item

EventRef = tuple[str, str]  # (tenant, event_id)
MessageRef = tuple[str, str]  # (tenant, message key)
PhoneRef = tuple[str, str]  # (tenant, E.164 phone)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message.inbound with a phone: what reply attribution needs."""

    tenant: str
    event_id: str
    phone: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PhoneWindow:
    """A phone's history between `lo` and `hi` (message sent times and inbound times)."""

    tenant: str
    phone: str
    lo: datetime
    hi: datetime


@dataclass(slots=True)
class ReportChanges:
    """What one transaction writes."""

    inserted: list[tuple[str, Message]] = field(default_factory=list)
    updated: list[tuple[str, Message]] = field(default_factory=list)
    inbounds: list[Inbound] = field(default_factory=list)
    counts: dict[tuple[str, Cell], int] = field(default_factory=dict)
    revenue: dict[tuple[str, RevenueCell], Decimal] = field(default_factory=dict)


class ConcurrentWrite(Exception):
    """Another instance created the same row first; the batch is retried and then sees it."""


class ReportUnit(Protocol):
    """One transaction against the report store."""

    async def claim(self, events: Sequence[EventRef]) -> set[EventRef]:
        """Record events in the inbox; return those not recorded before."""

    async def messages(self, refs: set[MessageRef]) -> dict[MessageRef, Message]:
        """Lock and return the stored messages among `refs`."""

    async def phone_history(self, windows: Sequence[PhoneWindow]
                            ) -> tuple[dict[MessageRef, Message], dict[PhoneRef, dict[str, datetime]]]:
        """Lock and return the messages sent to each phone within its window, and its inbound times."""

    async def add_orders(self, orders: Sequence[tuple[str, OrderPaid]]) -> list[tuple[str, OrderPaid]]:
        """Record paid orders; return those not recorded before (an order counts once, R-T2.4)."""

    async def save(self, changes: ReportChanges) -> None:
        """Write the changes; raise ConcurrentWrite when a message to insert exists already."""


class ReportStore(Protocol):
    """Where report facts and aggregates live."""

    def unit(self) -> AbstractAsyncContextManager[ReportUnit]:
        """A transaction: committed when the block ends normally, rolled back otherwise."""

    async def overview_rows(self, tenant: str, start: date, end: date) -> tuple[
            list[tuple[date, str | None, str, int]], list[tuple[date, str | None, str, Decimal]]]:
        """Stored counts and revenue of `tenant` between two days, inclusive."""

    async def ping(self) -> bool:
        """The store answers."""


class ReportingMetrics:
    """Business counters of reporting."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counted = Counter("scrm_reporting_counted_total",
                               "Statuses, clicks and purchases newly counted in the reports", ["metric"],
                               registry=registry)
        self.applied = Counter("scrm_reporting_events_applied_total", "Events applied to reports", ["type"],
                               registry=registry)
        self.duplicates = Counter("scrm_reporting_events_duplicate_total",
                                  "Events skipped because they were applied before", registry=registry)


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
        self._metrics.duplicates.inc(len(records) - len(events))
        per_metric: dict[str, int] = defaultdict(int)
        for (_, (_, _, metric)), n in changes.counts.items():
            per_metric[metric.value] += n
        for name, n in per_metric.items():
            if n > 0:
                self._metrics.counted.labels(name).inc(n)

    async def _apply(self, unit: ReportUnit, events: list[tuple[str, Event]]) -> ReportChanges:
        statuses: list[tuple[str, StatusSeen]] = []
        orders: list[tuple[str, OrderPaid]] = []
        changes = ReportChanges()
        for tenant, event in events:
            match event:
                case MessageStatus():
                    seen = status_seen(event)
                    if seen is not None:
                        statuses.append((tenant, seen))
                case MessageInbound() if event.contact.phone is not None:
                    changes.inbounds.append(Inbound(tenant, event.event_id, event.contact.phone, event.occurred_at))
                case LinkClicked():
                    _add(changes.counts, tenant, {click_cell(event): 1})
                case PaymentSucceeded():
                    orders.append((tenant, OrderPaid(order_id=event.data.order_id,
                                                     amount=Decimal(str(event.data.amount)),
                                                     currency=event.data.currency, paid_at=event.occurred_at)))
                case _:
                    pass

        before = await unit.messages({(t, s.key) for t, s in statuses}) if statuses else {}
        current = dict(before)
        for tenant, seen in statuses:
            current[(tenant, seen.key)] = observe(current.get((tenant, seen.key)), seen)
        await self._attribute_replies(unit, before, current, changes.inbounds)

        for ref, message in current.items():
            old = before.get(ref)
            if old is None:
                changes.inserted.append((ref[0], message))
            elif old != message:
                changes.updated.append((ref[0], message))
            else:
                continue
            _add(changes.counts, ref[0], delta(old, message))
        for tenant, order in await unit.add_orders(_distinct(orders)) if orders else []:
            count_cell, revenue_cell = order_cells(order)
            _add(changes.counts, tenant, {count_cell: 1})
            key = (tenant, revenue_cell)
            changes.revenue[key] = changes.revenue.get(key, Decimal(0)) + order.amount
        return changes

    async def _attribute_replies(self, unit: ReportUnit, before: dict[MessageRef, Message],
                                 current: dict[MessageRef, Message], inbounds: list[Inbound]) -> None:
        """Recompute `replied_at` of every message a changed sent time or a new inbound can affect."""
        window = self._policy.reply_window
        touched: dict[PhoneRef, list[datetime]] = defaultdict(list)
        for ref, message in current.items():
            old = before.get(ref)
            if old == message:
                continue
            for m in (old, message):
                if m is not None and m.phone is not None and m.sent_on is not None:
                    touched[(ref[0], m.phone)].append(m.sent_on)
        for inbound in inbounds:
            touched[(inbound.tenant, inbound.phone)].append(inbound.at)
        if not touched:
            return
        windows = [PhoneWindow(t, p, min(ts) - window, max(ts) + window) for (t, p), ts in sorted(touched.items())]
        nearby, history = await unit.phone_history(windows)
        for ref, message in nearby.items():
            if ref not in current:
                before[ref] = current[ref] = message
        by_phone: dict[PhoneRef, list[Message]] = defaultdict(list)
        for (tenant, _), message in current.items():
            if message.phone is not None:
                by_phone[(tenant, message.phone)].append(message)
        for inbound in inbounds:
            history.setdefault((inbound.tenant, inbound.phone), {})[inbound.event_id] = inbound.at
        for (tenant, phone), times in touched.items():
            replies = replies_in(by_phone[(tenant, phone)], history.get((tenant, phone), {}).values(),
                                 min(times) - window, max(times), window)
            for key, at in replies.items():
                ref = (tenant, key)
                if current[ref].replied_at != at:
                    current[ref] = current[ref].model_copy(update={"replied_at": at})


def _add(total: dict[tuple[str, Cell], int], tenant: str, cells: dict[Cell, int]) -> None:
    add_into(total, {(tenant, cell): n for cell, n in cells.items()})


def _distinct(orders: list[tuple[str, OrderPaid]]) -> list[tuple[str, OrderPaid]]:
    first: dict[tuple[str, str], tuple[str, OrderPaid]] = {}
    for tenant, order in orders:
        first.setdefault((tenant, order.order_id), (tenant, order))
    return list(first.values())
