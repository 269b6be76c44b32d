"""The person's carts as the flows see them (memory slot `carts`, R-T6): every cart the shop told of, open until
a purchase or an emptying closes it.

A cart's memory (JSON): `items` (sku, name, category, price, quantity, stock), `total`, `currency`,
`checkout_url`, `updated_at` (ISO UTC: the latest `cart.updated`'s `occurred_at`), `event_id` (that event's),
`status` (`open`, `purchased`, `emptied`) and `closed_at` (ISO UTC, when closed). Pure: `evolve_carts` is called
by `decide.evolve` for every event of the person.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from scrm_common.contracts.events import CartUpdated, Event, PaymentSucceeded
from trigger_engine.domain.model import ContactProfile

SLOT = "carts"
KEEP_CLOSED = timedelta(days=30)  # a closed cart is remembered this long (a late timer still finds it closed)
MAX_CARTS = 50  # the most carts remembered per person (the oldest closed ones go first)


@dataclass(frozen=True, slots=True)
class CartLine:
    """One item of a cart: price in currency units (a float as the event wrote it), `stock` None when unknown."""

    sku: str
    name: str
    category: str | None
    price: float
    quantity: int
    stock: int | None = None


@dataclass(frozen=True, slots=True)
class Cart:
    """A cart as remembered (see the module doc); `updated_at` aware UTC."""

    cart_id: str
    items: tuple[CartLine, ...]
    total: float
    currency: str
    checkout_url: str | None
    updated_at: datetime
    event_id: str
    status: str = "open"
    closed_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.status == "open"


def carts(profile: ContactProfile) -> dict[str, Cart]:
    """cart id → the person's cart as remembered (open and recently closed ones)."""
    return {cart_id: _cart(cart_id, value) for cart_id, value in profile.slot(SLOT).items()}


def cart(profile: ContactProfile, cart_id: str) -> Cart | None:
    """The person's cart `cart_id`, or None when it is not remembered."""
    value = profile.slot(SLOT).get(cart_id)
    return _cart(cart_id, value) if value is not None else None


def open_cart_skus(profile: ContactProfile) -> frozenset[str]:
    """The SKUs in the person's open carts (the engine's `cart_skus` index, R-T6.2 price drops)."""
    return frozenset(line.sku for c in carts(profile).values() if c.open for line in c.items)


def evolve_carts(profile: ContactProfile, event: Event) -> ContactProfile:
    """The person's carts after `event`:

    - `cart.updated` with items → the cart as the event has it, open (an event older than the remembered
      `updated_at` changes nothing: events may arrive out of order); without items → the cart `emptied`.
    - `payment.succeeded` naming a `cart_id` → that cart `purchased` (remembered even if never seen open, so a
      late `cart.updated` older than the purchase does not reopen it); naming none → every open cart last
      updated at or before the payment's `occurred_at` `purchased`.
    Closed carts older than `KEEP_CLOSED` before the event are forgotten; at most `MAX_CARTS` are kept.
    """
    if isinstance(event, CartUpdated):
        known = dict(profile.slot(SLOT))
        data = event.data
        before = known.get(data.cart_id)
        if before is not None and _at(before["updated_at"]) > event.occurred_at:
            return profile
        if before is not None and before.get("status") == "purchased" and _at(
                before.get("closed_at") or before["updated_at"]) >= event.occurred_at:
            return profile  # a cart update from before the purchase, arriving late, does not reopen the cart
        items = [{"sku": i.sku, "name": i.name, "category": i.category, "price": i.price, "quantity": i.quantity,
                  "stock": i.stock} for i in data.items]
        known[data.cart_id] = {
            "items": items, "total": data.total, "currency": data.currency, "checkout_url": data.checkout_url,
            "updated_at": _iso(event.occurred_at), "event_id": event.event_id,
            "status": "open" if items else "emptied", "closed_at": None if items else _iso(event.occurred_at)}
        return profile.with_slot(SLOT, _pruned(known, event.occurred_at))
    if isinstance(event, PaymentSucceeded):
        known = dict(profile.slot(SLOT))
        at = event.occurred_at
        cart_id = event.data.cart_id
        if cart_id is not None:
            before = known.get(cart_id)
            base = dict(before) if before is not None else {
                "items": [], "total": event.data.amount, "currency": event.data.currency, "checkout_url": None,
                "updated_at": _iso(at), "event_id": event.event_id}
            known[cart_id] = {**base, "status": "purchased", "closed_at": _iso(at)}
        else:
            for cid, value in list(known.items()):
                if value.get("status") == "open" and _at(value["updated_at"]) <= at:
                    known[cid] = {**value, "status": "purchased", "closed_at": _iso(at)}
        return profile.with_slot(SLOT, _pruned(known, at))
    return profile


def _pruned(known: dict[str, Any], now: datetime) -> Mapping[str, Any]:
    kept = {cid: v for cid, v in known.items()
            if v.get("status") == "open" or v.get("closed_at") is None or _at(v["closed_at"]) >= now - KEEP_CLOSED}
    if len(kept) > MAX_CARTS:
        ordered = sorted(kept, key=lambda cid: (kept[cid].get("status") == "open", kept[cid]["updated_at"]))
        kept = {cid: kept[cid] for cid in ordered[len(kept) - MAX_CARTS:]}
    return MappingProxyType(kept)


def _cart(cart_id: str, value: Mapping[str, Any]) -> Cart:
    lines = tuple(CartLine(sku=str(i["sku"]), name=str(i.get("name") or ""), category=i.get("category"),
                           price=float(i.get("price") or 0), quantity=int(i.get("quantity") or 1),
                           stock=i.get("stock")) for i in value.get("items") or ())
    closed = value.get("closed_at")
    return Cart(cart_id=cart_id, items=lines, total=float(value.get("total") or 0),
                currency=str(value.get("currency") or "EUR"), checkout_url=value.get("checkout_url"),
                updated_at=_at(value["updated_at"]), event_id=str(value.get("event_id") or ""),
                status=str(value.get("status") or "open"), closed_at=_at(closed) if closed else None)


def _iso(at: datetime) -> str:
    return at.isoformat()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
