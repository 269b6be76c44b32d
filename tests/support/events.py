"""Builders of valid events for tests, with unique ids, phones and orders."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

_counter = itertools.count(int(uuid.uuid4().int % 10_000_000))


def new_phone() -> str:
    """A valid, unique German mobile number in E.164."""
    return f"+49151{next(_counter) % 100_000_000:08d}"


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def new_order() -> str:
    """A shop order number as shops print them (`A58B2C` in CONTRACT §2)."""
    return uuid.uuid4().hex[:7].upper()


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def payment(*, order_id: str, phone: str, external_id: str | None = None, event_id: str | None = None,
            occurred_at: datetime | None = None, items: int = 1, name: str | None = "Anna",
            locale: str = "en-US", amount: float = 149.90) -> dict[str, Any]:
    contact: dict[str, Any] = {"phone": phone, "locale": locale}
    if external_id:
        contact["external_id"] = external_id
    if name:
        contact["name"] = name
    return {
        "event_id": event_id or new_id("pay"),
        "type": "payment.succeeded",
        "occurred_at": iso(occurred_at or datetime.now(UTC)),
        "contact": contact,
        "data": {
            "order_id": order_id, "amount": amount, "currency": "EUR", "tax": 23.93, "shipping": 4.90,
            "region": "DE",
            "items": [{"sku": f"S{i}", "name": f"Item number {i}", "category": "apparel",
                       "price": 10.0 + i, "quantity": 1} for i in range(items)],
        },
    }


# One zone per whole UTC offset from −11 to +14: whatever the hour of the test run, one of them is in daytime.
DAY_ZONES = ("Pacific/Pago_Pago", "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver",
             "America/Chicago", "America/New_York", "America/Halifax", "America/Sao_Paulo", "Atlantic/South_Georgia",
             "Atlantic/Azores", "Europe/London", "Europe/Berlin", "Europe/Athens", "Europe/Moscow", "Asia/Dubai",
             "Asia/Karachi", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane",
             "Pacific/Noumea", "Pacific/Auckland", "Pacific/Kiritimati")


def daytime_zone(now: datetime | None = None) -> str:
    """A zone where it is now 10:00–17:59 local (Europe/Berlin when it is): a test contact living there gets its
    marketing at once, whatever the hour of the run — the send gate defers marketing in local quiet hours (R-S4)."""
    at = now or datetime.now(UTC)
    found = [z for z in DAY_ZONES if 10 <= at.astimezone(ZoneInfo(z)).hour < 18]
    return "Europe/Berlin" if "Europe/Berlin" in found else found[0]


def contact_created(*, phone: str, external_id: str | None = None, name: str | None = None,
                    occurred_at: datetime | None = None, locale: str = "en-US") -> dict[str, Any]:
    """`contact.created` for a contact living where it is daytime now (`daytime_zone`), so that its welcome is not
    held by quiet hours; `contact_created_in` names the zone."""
    contact: dict[str, Any] = {"phone": phone, "locale": locale, "timezone": daytime_zone(occurred_at)}
    if external_id:
        contact["external_id"] = external_id
    if name:
        contact["name"] = name
    return {"event_id": new_id("contact"), "type": "contact.created",
            "occurred_at": iso(occurred_at or datetime.now(UTC)), "contact": contact,
            "data": {"opted_in": True}}


def status_webhook(*, phone_number_id: str, statuses: list[dict[str, Any]]) -> bytes:
    """A Meta `messages` webhook carrying statuses, as raw bytes."""
    body = {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
        "statuses": statuses}}]}]}
    return json.dumps(body).encode()


def status(wamid: str, kind: str, recipient: str, at: datetime) -> dict[str, Any]:
    return {"id": wamid, "status": kind, "timestamp": str(int(at.timestamp())), "recipient_id": recipient.lstrip("+")}


def sign(secret: str, raw: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def days_ago(n: int) -> datetime:
    return datetime.now(UTC) - timedelta(days=n)


def contact_created_in(zone: str, *, phone: str, external_id: str | None = None, name: str | None = None,
                       locale: str = "en-US", occurred_at: datetime | None = None) -> dict[str, Any]:
    """`contact.created` for a contact whose own IANA zone is `zone` (`contact.timezone`)."""
    event = contact_created(phone=phone, external_id=external_id, name=name, locale=locale, occurred_at=occurred_at)
    event["contact"]["timezone"] = zone
    return event
