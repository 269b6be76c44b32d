"""Builders of contract events and an in-memory report store for reporting unit tests."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

from reporting.domain.clicks import ClickSeen, first_click
from reporting.domain.ledger import MessageLookup, MessageRef
from reporting.domain.messages import Message, OrderPaid, Reply, StatusSeen, add_into, delta, observe
from reporting.domain.policy import ReportPolicy
from reporting.handlers import (
    ApplyEvents,
    ConcurrentWrite,
    RecipientRef,
    RecipientWindow,
    ReportChanges,
    ReportingMetrics,
)
from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, parse_event
from scrm_common.http import KeyIntrospection
from scrm_common.kafka.consumer import Item

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+4915112345678"
OTHER_PHONE = "+4915198765432"
_ids = itertools.count(1)


def event(type_: str, *, at: datetime = T0, external_id: str | None = None, phone: str | None = PHONE,
          wa_id: str | None = None, user_id: str | None = None, no_contact: bool = False,
          event_id: str | None = None, **data: Any) -> Event:
    """A contract event; `no_contact` leaves the contact out (statuses whose recipient is unknown)."""
    raw: dict[str, Any] = {"event_id": event_id or f"ev-{next(_ids)}", "type": type_,
                           "occurred_at": at.isoformat(), "data": data}
    if not no_contact:
        raw["contact"] = {k: v for k, v in {"external_id": external_id, "phone": phone, "wa_id": wa_id,
                                            "user_id": user_id}.items() if v is not None}
    return parse_event(raw)


def status(status_: str, *, message_id: str | None = "wamid.1", at: datetime = T0, **kw: Any) -> Event:
    """A webhook status; it carries the send's key (biz_opaque_callback_data) only when given one."""
    data = {k: kw.pop(k) for k in ("flow", "idempotency_key", "account_id", "category", "pricing_category")
            if k in kw}
    if message_id is not None:
        data["message_id"] = message_id
    return event("message.status", status=status_, at=at, **data, **kw)


def sent(message_id: str = "wamid.1", *, flow: str = "welcome", **kw: Any) -> Event:
    """The sender's own 'sent' outcome: always with the send's idempotency key."""
    return status("sent", message_id=message_id, flow=flow, idempotency_key=f"k-{message_id}",
                  account_id="acc-1", category="marketing", external_id="cust-1", **kw)


def deferred(idempotency_key: str = "k-wamid.1", *, rule: str = "R-S4", at: datetime = T0,
             until: datetime | None = None, flow: str = "welcome", **kw: Any) -> Event:
    """The sender's gate deferred the message (no wamid yet); it may go at `until` (default: at + 8 h)."""
    return status("deferred", message_id=None, flow=flow, idempotency_key=idempotency_key, rule=rule, at=at,
                  deferred_until=(until or at + timedelta(hours=8)).isoformat(), account_id="acc-1",
                  category="marketing", external_id="cust-1", **kw)


def suppressed(idempotency_key: str = "k-wamid.1", *, rule: str = "R-S5", at: datetime = T0,
               flow: str = "welcome", **kw: Any) -> Event:
    """The sender's gate suppressed the message: it will never go."""
    return status("suppressed", message_id=None, flow=flow, idempotency_key=idempotency_key, rule=rule, at=at,
                  error_reason=f"suppressed by {rule}", account_id="acc-1", category="marketing",
                  external_id="cust-1", **kw)


def inbound(*, at: datetime = T0, phone: str | None = PHONE, type_: str = "text", text: str | None = "hi",
            **kw: Any) -> Event:
    """A customer's message of `type_` (any type is a reply)."""
    data: dict[str, Any] = {"type": type_}
    if text is not None:
        data["text"] = text
    return event("message.inbound", at=at, phone=phone, **data, **kw)


def clicked(url: str = "https://shop.example/p?utm_source=whatsapp&utm_campaign=welcome", **kw: Any) -> Event:
    return event("link.clicked", link_id="l1", url=url, **kw)


def paid(order_id: str, amount: float, currency: str = "EUR", **kw: Any) -> Event:
    return event("payment.succeeded", order_id=order_id, amount=amount, currency=currency,
                 external_id="cust-1", **kw)


def items(*events: Event, tenant: str = "shop") -> list[Item[EventRecord]]:
    return [Item(record=None, value=EventRecord(tenant, ev, None, None)) for ev in events]


async def played(events: Iterable[Event]) -> FakeStore:
    """A fresh store after each of `events` was consumed in a batch of its own, in the order given."""
    store = FakeStore()
    handle = ApplyEvents(store=store, policy=ReportPolicy(), metrics=ReportingMetrics(CollectorRegistry()))
    for ev in events:
        await handle(items(ev))
    return store


def summed_deltas(facts: Iterable[StatusSeen]) -> dict:
    """The stored totals after `facts` arrive one by one: the sum of each arrival's delta."""
    total: dict = {}
    previous: Message | None = None
    for f in facts:
        current = observe(previous, f)
        add_into(total, delta(previous, current))
        previous = current
    return total


class FakeUnit:
    """One 'transaction': applied to the store only when the block ends normally."""

    def __init__(self, store: FakeStore) -> None:
        self.inbox = set(store.inbox)
        self.msgs = dict(store.msgs)
        self.inbounds = dict(store.inbounds)
        self.orders = dict(store.orders)
        self.clicks = dict(store.clicks)
        self.counts = dict(store.counts)
        self.gate_counts = dict(store.gate_counts)
        self.revenue = dict(store.revenue)

    async def claim(self, events: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        new = {e for e in events if e not in self.inbox}
        self.inbox |= new
        return new

    async def messages(self, lookup: MessageLookup) -> dict[MessageRef, Message]:
        return {(t, k): m for (t, k), m in self.msgs.items()
                if (t, k) in lookup.keys or (t, m.idempotency_key) in lookup.idempotency_keys
                or any((t, w) in lookup.wamids for w in (k, m.message_id, m.attempt_id))}

    async def recipient_history(self, windows: Sequence[RecipientWindow]
                                ) -> tuple[dict[MessageRef, Message], dict[RecipientRef, dict[str, Reply]]]:
        msgs: dict[MessageRef, Message] = {}
        inb: dict[RecipientRef, dict[str, Reply]] = {}
        for w in windows:
            for (t, k), m in self.msgs.items():
                if (t == w.tenant and m.recipient == w.recipient and m.reply_from is not None
                        and w.lo <= m.reply_from <= w.hi):
                    msgs[(t, k)] = m
            for (t, eid), (recipient, reply) in self.inbounds.items():
                if t == w.tenant and recipient == w.recipient and w.lo <= reply.at <= w.hi:
                    inb.setdefault((t, recipient), {})[eid] = reply
        return msgs, inb

    async def replies_naming(self, wamids: set[tuple[str, str]]) -> dict[RecipientRef, dict[str, Reply]]:
        out: dict[RecipientRef, dict[str, Reply]] = {}
        for (t, eid), (recipient, reply) in self.inbounds.items():
            if (t, reply.context) in wamids:
                out.setdefault((t, recipient), {})[eid] = reply
        return out

    async def add_orders(self, orders: Sequence[tuple[str, OrderPaid]]) -> list[tuple[str, OrderPaid]]:
        new = []
        for t, o in orders:
            if (t, o.order_id) not in self.orders:
                self.orders[(t, o.order_id)] = o
                new.append((t, o))
        return new

    async def add_clicks(self, clicks: Sequence[tuple[str, ClickSeen]]
                         ) -> list[tuple[str, ClickSeen | None, ClickSeen]]:
        changed: list[tuple[str, ClickSeen | None, ClickSeen]] = []
        for t, c in clicks:
            before = self.clicks.get((t, c.idempotency_key))
            if first_click(before, c) is c:
                self.clicks[(t, c.idempotency_key)] = c
                changed.append((t, before, c))
        return changed

    async def save(self, changes: ReportChanges) -> None:
        for ref in changes.deleted:
            del self.msgs[ref]
        for t, m in changes.inserted:
            if (t, m.key) in self.msgs:
                raise ConcurrentWrite("exists")
            self.msgs[(t, m.key)] = m
        for t, m in changes.inserted + changes.updated:
            if m.idempotency_key and any(o.idempotency_key == m.idempotency_key and (ot, o.key) != (t, m.key)
                                         for (ot, _), o in self.msgs.items() if ot == t):
                raise ConcurrentWrite("idempotency key taken")
        for t, m in changes.updated:
            self.msgs[(t, m.key)] = m
        for i in changes.inbounds:
            self.inbounds.setdefault((i.tenant, i.seen.event_id), (i.seen.recipient, i.seen.reply))
        for key, n in changes.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        for key, n in changes.gate_counts.items():
            self.gate_counts[key] = self.gate_counts.get(key, 0) + n
        for key, amount in changes.revenue.items():
            self.revenue[key] = self.revenue.get(key, Decimal(0)) + amount


class FakeStore:
    """An in-memory ReportStore with the same transactional behaviour as the real one."""

    def __init__(self) -> None:
        self.inbox: set[tuple[str, str]] = set()
        self.msgs: dict[MessageRef, Message] = {}
        self.inbounds: dict[tuple[str, str], tuple[str, Reply]] = {}
        self.orders: dict[tuple[str, str], OrderPaid] = {}
        self.clicks: dict[tuple[str, str], ClickSeen] = {}
        self.counts: dict = {}
        self.gate_counts: dict = {}
        self.revenue: dict = {}

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[FakeUnit]:
        unit = FakeUnit(self)
        yield unit
        self.inbox, self.msgs, self.inbounds = unit.inbox, unit.msgs, unit.inbounds
        self.orders, self.counts, self.revenue = unit.orders, unit.counts, unit.revenue
        self.clicks = unit.clicks
        self.gate_counts = unit.gate_counts

    async def overview_rows(self, tenant: str, start: date, end: date):
        counts = [(c[0], c[1], c[2].value, n) for (t, c), n in self.counts.items()
                  if t == tenant and start <= c[0] <= end and n]
        revenue = [(c[0], c[1], c[2], a) for (t, c), a in self.revenue.items() if t == tenant and start <= c[0] <= end]
        return counts, revenue

    async def gate_rows(self, tenant: str, start: date, end: date, flow: str | None):
        return [(c[0], c[1], c[2], c[3].value, n) for (t, c), n in self.gate_counts.items()
                if t == tenant and start <= c[0] <= end and n and (flow is None or c[1] == flow)]

    async def ping(self) -> bool:
        return True

    def gate(self, tenant: str = "shop", rule: str = "") -> dict[str, int]:
        """Gate counts of `tenant` summed over days and flows, for one rule ('' = each message once)."""
        out: dict[str, int] = {}
        for (t, (_, _, r, metric)), n in self.gate_counts.items():
            if t == tenant and r == rule:
                out[metric.value] = out.get(metric.value, 0) + n
        return {k: v for k, v in out.items() if v}

    def totals(self, tenant: str = "shop") -> dict[str, int]:
        out: dict[str, int] = {}
        for (t, (_, _, metric)), n in self.counts.items():
            if t == tenant:
                out[metric.value] = out.get(metric.value, 0) + n
        return {k: v for k, v in out.items() if v}


def fake_keys() -> KeyIntrospection:
    """The real KeyIntrospection against a stand-in for ingest's introspection: the key `<tenant>[:<role>]`
    belongs to that tenant with that role (admin when left out); a key starting with `unknown` is no key (404)."""
    def introspect(request: httpx.Request) -> httpx.Response:
        key = json.loads(request.content)["api_key"]
        if key.startswith("unknown"):
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "unknown key"}})
        tenant, _, role = key.partition(":")
        return httpx.Response(200, json={"tenant": tenant, "role": role or "admin", "key_id": f"key_{tenant}"})

    return KeyIntrospection("http://ingest.test", internal_token="test-internal-token",
                            client=httpx.AsyncClient(transport=httpx.MockTransport(introspect)))
