"""Builders of contract events and an in-memory contact store for segmenter unit tests."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx

from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import Event, parse_event
from scrm_common.http import KeyIntrospection
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures
from segmenter.domain.roster import AliasRef, ContactRef
from segmenter.handlers import ConcurrentWrite, ContactChanges, ContactRow, StoredCurrency

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+4915112345678"
OTHER_PHONE = "+4915198765432"
_ids = itertools.count(1)


def event(type_: str, *, at: datetime = T0, external_id: str | None = "cust-1", phone: str | None = PHONE,
          wa_id: str | None = None, user_id: str | None = None, profile_name: str | None = None,
          event_id: str | None = None, name: str | None = None, no_contact: bool = False, **data: Any) -> Event:
    """A contract event of `type_` about one contact (none with `no_contact`)."""
    contact: dict[str, Any] = {k: v for k, v in
                               {"external_id": external_id, "phone": phone, "wa_id": wa_id, "user_id": user_id,
                                "profile_name": profile_name, "name": name}.items() if v is not None}
    raw: dict[str, Any] = {"event_id": event_id or f"ev-{next(_ids)}", "type": type_,
                           "occurred_at": at.isoformat()}
    if not no_contact:
        raw["contact"] = contact
    if data or type_ not in ("contact.created", "contact.updated"):
        raw["data"] = data
    return parse_event(raw)


def inbound(*, type_: str = "text", text: str | None = "hello", **kw: Any) -> Event:
    """A customer's message of `type_` (text, image, reaction …)."""
    data: dict[str, Any] = {"type": type_}
    if text is not None:
        data["text"] = text
    return event("message.inbound", **data, **kw)


def click(**kw: Any) -> Event:
    return event("link.clicked", link_id="l1", url="https://shop.example/x", **kw)


def read(*, idempotency_key: str | None = "k-1", **kw: Any) -> Event:
    """A read receipt of a message the platform sent (it carries the send's key) unless told otherwise."""
    data = {"idempotency_key": idempotency_key} if idempotency_key is not None else {}
    return event("message.status", message_id="wamid.1", status="read", **data, **kw)


def paid(order_id: str, amount: float, currency: str = "EUR", **kw: Any) -> Event:
    return event("payment.succeeded", order_id=order_id, amount=amount, currency=currency, **kw)


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
        self.aliases = dict(store.aliases)
        self.sent_to = dict(store.recipients)
        self.currency_settings = store.currency_settings

    async def claim(self, events: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        new = {e for e in events if e not in self.inbox}
        self.inbox |= new
        return new

    async def load(self, keys: set[ContactRef], aliases: set[AliasRef]
                   ) -> tuple[dict[ContactRef, ContactFeatures], dict[AliasRef, str]]:
        owners = {a: self.aliases[a] for a in aliases if a in self.aliases}
        wanted = keys | {(a[0], k) for a, k in owners.items()}
        contacts = {k: self.contacts[k].features for k in wanted if k in self.contacts}
        owners.update({a: k for a, k in self.aliases.items() if (a[0], k) in contacts})
        return contacts, owners

    async def recipients(self, messages: set[tuple[str, str]]) -> dict[tuple[str, str], str]:
        return {m: self.sent_to[m] for m in messages if m in self.sent_to}

    async def save(self, changes: ContactChanges) -> None:
        for ref in changes.deleted:
            del self.contacts[ref]
        for row in changes.inserted:
            if (row.tenant, row.key) in self.contacts:
                raise ConcurrentWrite("exists")
            self.contacts[(row.tenant, row.key)] = row
        for row in changes.updated:
            self.contacts[(row.tenant, row.key)] = row
        for ref in changes.aliases_inserted:
            if ref in self.aliases:
                raise ConcurrentWrite("alias exists")
        self.aliases.update(changes.aliases_inserted)
        self.aliases.update(changes.aliases_updated)
        for tenant, old, new in changes.renamed:
            self.sent_to.update({m: new for m, k in self.sent_to.items() if m[0] == tenant and k == old})
        self.sent_to.update(changes.recipients)

    async def due(self, now: datetime, limit: int) -> dict[ContactRef, ContactFeatures]:
        due = [(r.refresh_at, ref) for ref, r in self.contacts.items() if r.refresh_at and r.refresh_at <= now]
        return {ref: self.contacts[ref].features for _, ref in sorted(due)[:limit]}

    async def currencies(self, tenants: set[str]) -> dict[str, CurrencySettings]:
        return {t: s.settings for t, s in self.currency_settings.items() if t in tenants}


class FakeStore:
    """An in-memory ContactStore with the same transactional behaviour as the real one."""

    def __init__(self) -> None:
        self.inbox: set[tuple[str, str]] = set()
        self.contacts: dict[ContactRef, ContactRow] = {}
        self.aliases: dict[AliasRef, str] = {}
        self.recipients: dict[tuple[str, str], str] = {}  # (tenant, idempotency key) → contact key
        self.currency_settings: dict[str, StoredCurrency] = {}

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[FakeUnit]:
        unit = FakeUnit(self)
        yield unit
        self.inbox, self.contacts, self.aliases, self.recipients = \
            unit.inbox, unit.contacts, unit.aliases, unit.sent_to

    async def find(self, tenant: str, ref: str, aliases: Sequence[str]) -> tuple[str, ContactFeatures] | None:
        if (tenant, ref) in self.contacts:
            return ref, self.contacts[(tenant, ref)].features
        for alias in aliases:
            key = self.aliases.get((tenant, alias))
            if key is not None and (tenant, key) in self.contacts:
                return key, self.contacts[(tenant, key)].features
        return None

    async def currency(self, tenant: str) -> StoredCurrency | None:
        return self.currency_settings.get(tenant)

    async def put_currency(self, tenant: str, settings: CurrencySettings, now: datetime) -> None:
        self.currency_settings[tenant] = StoredCurrency(settings, now)
        for ref, row in self.contacts.items():
            if ref[0] == tenant and row.value_tier is not None:
                self.contacts[ref] = _with_refresh(row, now)

    async def ping(self) -> bool:
        return True


def _with_refresh(row: ContactRow, at: datetime) -> ContactRow:
    return ContactRow(tenant=row.tenant, key=row.key, features=row.features, activity_tier=row.activity_tier,
                      value_tier=row.value_tier, tags=row.tags, computed_at=row.computed_at, refresh_at=at)


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
