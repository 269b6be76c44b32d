"""Builders of contract events and an in-memory contact store for segmenter unit tests."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, parse_event
from segmenter.domain.features import ContactFeatures
from segmenter.domain.roster import ContactRef, PhoneRef
from segmenter.handlers import ConcurrentWrite, ContactChanges, ContactRow

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+4915112345678"
OTHER_PHONE = "+4915198765432"
_ids = itertools.count(1)


def event(type_: str, *, at: datetime = T0, external_id: str | None = "cust-1", phone: str | None = PHONE,
          event_id: str | None = None, name: str | None = None, **data: Any) -> Event:
    """A contract event of `type_` about one contact."""
    contact: dict[str, Any] = {k: v for k, v in
                               {"external_id": external_id, "phone": phone, "name": name}.items() if v is not None}
    raw: dict[str, Any] = {"event_id": event_id or f"ev-{next(_ids)}", "type": type_,
                           "occurred_at": at.isoformat(), "contact": contact}
    if data or type_ not in ("contact.created", "contact.updated"):
        raw["data"] = data
    return parse_event(raw)


def inbound(**kw: Any) -> Event:
    return event("message.inbound", text="hello", **kw)


def click(**kw: Any) -> Event:
    return event("link.clicked", link_id="l1", url="https://shop.example/x", **kw)


def read(**kw: Any) -> Event:
    return event("message.status", message_id="wamid.1", status="read", **kw)


def paid(order_id: str, amount: float, **kw: Any) -> Event:
    return event("payment.succeeded", order_id=order_id, amount=amount, currency="EUR", **kw)


def returned(order_id: str, amount: float, **kw: Any) -> Event:
    return event("order.returned", order_id=order_id, amount=amount, **kw)


def record(ev: Event, tenant: str = "shop") -> EventRecord:
    return EventRecord(tenant=tenant, event=ev, ingested_at=None, correlation_id=None)


class FakeUnit:
    """One 'transaction' on FakeStore: changes are applied only when the block ends normally."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.inbox = set(store.inbox)
        self.contacts = dict(store.contacts)
        self.phones = dict(store.phones)

    async def claim(self, events: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        new = {e for e in events if e not in self.inbox}
        self.inbox |= new
        return new

    async def load(self, keys: set[ContactRef], phones: set[PhoneRef]
                   ) -> tuple[dict[ContactRef, ContactFeatures], dict[PhoneRef, str]]:
        owners = {p: self.phones[p] for p in phones if p in self.phones}
        wanted = keys | {(p[0], k) for p, k in owners.items()}
        return {k: self.contacts[k].features for k in wanted if k in self.contacts}, owners

    async def save(self, changes: ContactChanges) -> None:
        for ref in changes.deleted:
            del self.contacts[ref]
        for row in changes.inserted:
            if (row.tenant, row.key) in self.contacts:
                raise ConcurrentWrite("exists")
            self.contacts[(row.tenant, row.key)] = row
        for row in changes.updated:
            self.contacts[(row.tenant, row.key)] = row
        self.phones.update(changes.phones_inserted)
        self.phones.update(changes.phones_updated)

    async def due(self, now: datetime, limit: int) -> dict[ContactRef, ContactFeatures]:
        due = [(r.refresh_at, ref) for ref, r in self.contacts.items() if r.refresh_at and r.refresh_at <= now]
        return {ref: self.contacts[ref].features for _, ref in sorted(due)[:limit]}


class FakeStore:
    """An in-memory ContactStore with the same transactional behaviour as the real one."""

    def __init__(self) -> None:
        self.inbox: set[tuple[str, str]] = set()
        self.contacts: dict[ContactRef, ContactRow] = {}
        self.phones: dict[PhoneRef, str] = {}

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[FakeUnit]:
        unit = FakeUnit(self)
        yield unit
        self.inbox, self.contacts, self.phones = unit.inbox, unit.contacts, unit.phones

    async def find(self, tenant: str, ref: str, phone: str | None) -> tuple[str, ContactFeatures] | None:
        if (tenant, ref) in self.contacts:
            return ref, self.contacts[(tenant, ref)].features
        key = self.phones.get((tenant, phone or ""))
        if key is not None and (tenant, key) in self.contacts:
            return key, self.contacts[(tenant, key)].features
        return None

    async def ping(self) -> bool:
        return True
