"""Builders of contract events, profiles and the catalog for trigger-engine unit tests."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scrm_common.contracts.events import (
    ContactCreated,
    ContactNumberChanged,
    Event,
    MarketingPreferenceChanged,
    PaymentSucceeded,
    parse_event,
)
from trigger_engine.domain.flows import engine_config
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings, TenantSettings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+4915112345678"
TENANT = "acme"
CATALOG = Path(__file__).resolve().parents[3] / "services/sender/src/sender/catalog/default_templates.json"
_ids = itertools.count(1)


def config(*flows: FlowSettings, settings: TenantSettings | None = None,
           accounts: tuple[str, ...] | None = ("acct-1",), **flow_changes: dict[str, Any]) -> EngineConfig:
    """The tenant's configuration with `flows` (settings models) or `flow_changes` (flow name → changed
    fields), on the tenant settings `settings`, owning `accounts` (the first is the default)."""
    from trigger_engine.domain.flows import FLOWS

    by_name: dict[str, FlowSettings] = {name: kind(**flow_changes[name]) for name, kind in FLOWS.items()
                                        if name in flow_changes}
    for flow in flows:
        by_name.update({name: flow for name, kind in FLOWS.items() if isinstance(flow, kind)})
    return engine_config(TENANT, settings or TenantSettings(), by_name, accounts)


def profile(contact_key: str = "cust-1", **fields: Any) -> ContactProfile:
    fields.setdefault("phone", PHONE)
    return ContactProfile(contact_key=contact_key, **fields)


def _contact(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def contact_created(*, at: datetime | str = T0, external_id: str | None = "cust-1", phone: str | None = PHONE,
                    name: str | None = None, locale: str | None = None, opted_in: bool | None = None,
                    event_id: str | None = None, wa_id: str | None = None, profile_name: str | None = None,
                    timezone: str | None = None) -> ContactCreated:
    contact = _contact(external_id=external_id, phone=phone, name=name, locale=locale, wa_id=wa_id,
                       profile_name=profile_name, timezone=timezone)
    data = {"opted_in": opted_in} if opted_in is not None else {}
    event = parse_event({"event_id": event_id or f"e{next(_ids)}", "type": "contact.created",
                         "occurred_at": at if isinstance(at, str) else at.isoformat(), "contact": contact,
                         "data": data})
    assert isinstance(event, ContactCreated)
    return event


def contact_updated(*, at: datetime = T0, **contact: Any) -> Event:
    return parse_event({"event_id": f"e{next(_ids)}", "type": "contact.updated", "occurred_at": at.isoformat(),
                        "contact": _contact(**contact)})


def inbound(*, wa_id: str, profile_name: str | None = None, text: str = "hi", at: datetime = T0) -> Event:
    """A customer's message as ingest turns a webhook into an event: WhatsApp's identity only."""
    return parse_event({"event_id": f"e{next(_ids)}", "type": "message.inbound", "occurred_at": at.isoformat(),
                        "contact": _contact(wa_id=wa_id, profile_name=profile_name),
                        "data": {"type": "text", "text": text}})


def number_changed(*, old_wa_id: str, new_wa_id: str, at: datetime = T0) -> ContactNumberChanged:
    event = parse_event({"event_id": f"e{next(_ids)}", "type": "contact.number_changed",
                         "occurred_at": at.isoformat(), "contact": {"wa_id": old_wa_id},
                         "data": {"old_wa_id": old_wa_id, "new_wa_id": new_wa_id}})
    assert isinstance(event, ContactNumberChanged)
    return event


def marketing_changed(value: str, *, wa_id: str = PHONE[1:], at: datetime = T0,
                      category: str = "marketing_messages") -> MarketingPreferenceChanged:
    event = parse_event({"event_id": f"e{next(_ids)}", "type": "contact.marketing_preference_changed",
                         "occurred_at": at.isoformat(), "contact": {"wa_id": wa_id},
                         "data": {"category": category, "value": value}})
    assert isinstance(event, MarketingPreferenceChanged)
    return event


def payment(*, order_id: str = "A-1001", at: datetime = T0, amount: float = 149.90, tax: float = 23.93,
            shipping: float = 4.90, currency: str = "EUR", region: str | None = "DE",
            items: list[dict[str, Any]] | None = None, external_id: str | None = "cust-1",
            phone: str | None = PHONE, event_id: str | None = None) -> PaymentSucceeded:
    contact = _contact(external_id=external_id, phone=phone)
    data: dict[str, Any] = {"order_id": order_id, "amount": amount, "currency": currency, "tax": tax,
                            "shipping": shipping}
    if region is not None:
        data["region"] = region
    if items is not None:
        data["items"] = items
    event = parse_event({"event_id": event_id or f"e{next(_ids)}", "type": "payment.succeeded",
                         "occurred_at": at.isoformat(), "contact": contact, "data": data})
    assert isinstance(event, PaymentSucceeded)
    return event


def item(name: str, price: float = 10.0, quantity: int = 1, sku: str | None = None) -> dict[str, Any]:
    return {"sku": sku or f"sku-{next(_ids)}", "name": name, "price": price, "quantity": quantity}


def catalog_body(name: str, language: str) -> str:
    for template in json.loads(CATALOG.read_text()):
        if template["name"] == name and template["language"] == language:
            return template["body"]
    raise KeyError((name, language))
