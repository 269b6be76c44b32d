"""Builders of contract events, profiles and the catalog for trigger-engine unit tests."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scrm_common.contracts.events import ContactCreated, PaymentSucceeded, parse_event
from trigger_engine.domain.model import ContactProfile, EngineConfig

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+4915112345678"
TENANT = "acme"
CATALOG = Path(__file__).resolve().parents[3] / "services/sender/src/sender/catalog/default_templates.json"
_ids = itertools.count(1)


def config(**changes: Any) -> EngineConfig:
    return EngineConfig(tenant=TENANT, account_id="acct-1", **changes)


def profile(contact_key: str = "cust-1", **fields: Any) -> ContactProfile:
    fields.setdefault("phone", PHONE)
    return ContactProfile(contact_key=contact_key, **fields)


def contact_created(*, at: datetime = T0, external_id: str | None = "cust-1", phone: str | None = PHONE,
                    name: str | None = None, locale: str | None = None, opted_in: bool | None = None,
                    event_id: str | None = None) -> ContactCreated:
    contact = {k: v for k, v in {"external_id": external_id, "phone": phone, "name": name,
                                 "locale": locale}.items() if v is not None}
    data = {"opted_in": opted_in} if opted_in is not None else {}
    event = parse_event({"event_id": event_id or f"e{next(_ids)}", "type": "contact.created",
                         "occurred_at": at.isoformat(), "contact": contact, "data": data})
    assert isinstance(event, ContactCreated)
    return event


def payment(*, order_id: str = "A-1001", at: datetime = T0, amount: float = 149.90, tax: float = 23.93,
            shipping: float = 4.90, currency: str = "EUR", region: str | None = "DE",
            items: list[dict[str, Any]] | None = None, external_id: str | None = "cust-1",
            phone: str | None = PHONE, event_id: str | None = None) -> PaymentSucceeded:
    contact = {k: v for k, v in {"external_id": external_id, "phone": phone}.items() if v is not None}
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
