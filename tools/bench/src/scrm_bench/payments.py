"""Benchmark payments: valid `payment.succeeded` events, each with its own order and phone number."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

_ITEMS = (
    {"sku": "SNK-RUN-42", "name": "Running Sneaker Aero", "category": "shoes", "price": 119.9, "quantity": 1},
    {"sku": "TEE-ORG-WH", "name": "Organic Cotton T-Shirt", "category": "apparel", "price": 24.9, "quantity": 2},
    {"sku": "SCK-3PK", "name": "Merino Socks 3-Pack", "category": "accessories", "price": 19.9, "quantity": 1},
)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def order_id(run: str, i: int) -> str:
    return f"B{run}{i:07d}"


def phone(run_offset: int, i: int) -> str:
    """A distinct valid German mobile number per order (+49151 and 8 digits)."""
    return f"+49151{(run_offset + i) % 100_000_000:08d}"


def payment(run: str, run_offset: int, i: int, occurred_at: float) -> dict[str, Any]:
    """Payment `i` of a run, as the shop would post it."""
    n = 1 + i % 3
    items = [dict(item) for item in _ITEMS[:n]]
    subtotal = round(sum(it["price"] * it["quantity"] for it in items), 2)
    shipping = 0.0 if subtotal >= 50 else 4.9
    amount = round(subtotal + shipping, 2)
    return {
        "event_id": f"pay-{run}-{i}",
        "type": "payment.succeeded",
        "occurred_at": iso(occurred_at),
        "contact": {"external_id": f"bench-{run}-{i}", "phone": phone(run_offset, i), "name": "Anna Schmidt",
                    "locale": "de-DE", "timezone": "Europe/Berlin"},
        "data": {"order_id": order_id(run, i), "amount": amount, "currency": "EUR",
                 "tax": round(amount * 0.19 / 1.19, 2), "shipping": shipping, "region": "DE", "items": items},
    }


def order_of_callback(callback: str | None, run: str) -> str | None:
    """The order id in the sender's callback data (`<tenant>|order_confirmation|<order_id>`) if it is this run's."""
    if not callback:
        return None
    order = callback.rsplit("|", 1)[-1]
    return order if order.startswith(f"B{run}") else None
