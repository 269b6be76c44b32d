"""Realistic shop traffic as CONTRACT §2 events: pure and seeded — no I/O, the clock is passed in.

`DemoShop.emit(now, count)` returns exactly `count` JSON-ready events: follow-ups that fell due first
(checkouts of carts, shipments, gateway duplicates and re-sends), then fresh activity. What happens:

- new contacts (`contact.created`, German/English/… names, valid mobile numbers, sometimes no name);
- carts (`cart.updated`), most of them checked out a little later, the others emptied — an ordinary cart
  never waits for a reminder;
- abandoned carts (issue 9, R-T6): `cart.updated` with 1–4 items from every category (baby, electronics,
  apparel, beauty, other), stock and a `checkout_url`, a quarter of them above 200, back-dated 31 minutes so
  reminder stage 1 is due at once (some 24 h 1 min, so stage 1 has expired and stage 2 is due — the second
  abandoned cart of a run always); some bought back a few minutes later (`payment.succeeded` with that
  `cart_id`), some emptied, the rest (the run's first always) left open for hours, then cleared by the shop;
- payments (`payment.succeeded` with 1–5 items, tax, shipping, region); ~3 % sent twice with the same
  `event_id` (gateway retries), ~2 % re-sent minutes later under a new `event_id`, ~5 % arriving minutes
  late (`occurred_at` in the past); a few failed payments;
- shipments (`shipment.updated` shipped → out_for_delivery → delivered, with carrier and tracking URL);
  some orders above 300 (the anti-fraud notice, R-T2.5), some returned (`order.returned`);
- price changes (`product.price_changed`, no contact): mostly of SKUs sitting in open carts, lowered by
  10–20 % (R-T6.2), sometimes raised;
- inbound chat (`message.inbound`), feedback, contact updates.

Time is compressed so a demo shows every flow within minutes.

Marketing is paced (`Pace`): the three activities that lead to marketing messages — new contacts (the welcome,
R-T1), abandoned carts (cart reminders, R-T6) and price changes (price drops to open carts, R-T6.2) — happen
on the shop's clock at a fixed pace whatever the event rate, the first of each within the first minutes. The
demo's WhatsApp number sends at most 200 marketing messages an hour, 3–5 s apart (R-S3, the sender's
`PacingPolicy` for an established number, as `make run` registers it): the demo stays well below that, so a
marketing message of the operator's own goes out at once instead of queueing behind the demo's.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from demo_shop.catalog import (
    COUNTRIES,
    FEEDBACK_TEXTS,
    FIRST_NAMES,
    INBOUND_TEXTS,
    LAST_NAMES,
    PREMIUM_FROM,
    PRODUCTS,
    RATING_WEIGHTS,
    TAGS,
    Country,
    Product,
)
from scrm_common.phones import InvalidPhoneNumber, to_e164

Event = dict[str, Any]

SHOP_URL = "https://shop.example"

# Fresh activity that leads to no marketing message, and its relative weight (the rest of the traffic).
ACTIVITY: tuple[tuple[str, float], ...] = (
    ("contact.updated", 0.05),
    ("cart.updated", 0.24),
    ("payment.succeeded", 0.30),
    ("payment.failed", 0.03),
    ("message.inbound", 0.22),
    ("feedback.submitted", 0.13),
    ("order.returned", 0.03),
)

# The activities that lead to marketing messages, paced on the shop's clock (`Pace`; `cart.abandoned` is a
# `cart.updated` nobody checks out soon).
PACED = ("contact.created", "cart.abandoned", "product.price_changed")


@dataclass(frozen=True, slots=True)
class Pace:
    """How often the activities leading to marketing happen, per hour of the shop's clock, whatever the event
    rate (0: never); each interval is drawn from 0.5–1.5 × the mean, so no hour holds more than twice the pace.

    The demo's number may send 200 marketing messages an hour (R-S3). What the defaults lead to, as decided by
    the trigger-engine: a welcome per contact created (20/h, ~8 % not opted in), a cart reminder per abandoned
    cart (10/h; stage 2 and 3 come 24 h and 72 h after a cart, which the shop clears after `Timing.
    open_cart_lifetime_s`), a price drop per person with the product in an open cart for the ~80 % of price
    changes that lower a price (6/h; a handful of carts each) — about 50 an hour, one every ~70 s, never near
    100 (tests/unit/demo_shop/test_demo_shop_marketing_pace.py counts them).
    """

    contacts_per_hour: float = 20.0
    abandoned_per_hour: float = 10.0
    price_changes_per_hour: float = 6.0
    # When the first of each is due after the shop's first event, seconds: a welcome at once, the first cart
    # reminder within the minute, the first price drop — of a product in that cart, most likely — soon after.
    first_after_s: tuple[float, float, float] = (0.0, 20.0, 120.0)

    def per_hour(self, kind: str) -> float:
        return {"contact.created": self.contacts_per_hour, "cart.abandoned": self.abandoned_per_hour,
                "product.price_changed": self.price_changes_per_hour}[kind]


@dataclass(frozen=True, slots=True)
class Odds:
    """How often the messy things happen."""

    duplicate: float = 0.03  # same event_id again, seconds later (gateway retry)
    resend: float = 0.02  # same payment under a new event_id, minutes later
    late: float = 0.05  # payment arriving minutes after it occurred
    no_name: float = 0.15  # contact without a name
    guest_checkout: float = 0.15  # payment by a contact known only by phone
    cart_checkout: float = 0.8  # a cart that is paid a little later; the others are emptied
    abandoned_bought_back: float = 0.3  # an abandoned cart paid after its first reminder
    abandoned_emptied: float = 0.1  # an abandoned cart emptied after its first reminder
    abandoned_day_old: float = 0.15  # an abandoned cart back-dated a day (stage 1 expired, stage 2 due)
    big_cart: float = 0.25  # an abandoned cart with a premium product (often above 200, R-T6.4)
    big_order: float = 0.08  # a payment with a premium product (often above 300, R-T2.5)
    price_of_carted_sku: float = 0.8  # a price change of a SKU in an open cart (else any product)
    price_rise: float = 0.2  # a price change that raises the price


@dataclass(frozen=True, slots=True)
class Timing:
    """How far back and how far ahead the cart story plays, in seconds (compressed for a demo)."""

    abandoned_age_s: float = 31 * 60  # R-T6 stage 1 (30 ± 5 min after the cart) is due at once or soon
    abandoned_day_age_s: float = 24 * 3600 + 60  # stage 1 (30 min, expires at stage 2) past, stage 2 due
    buy_back_after_s: tuple[float, float] = (60.0, 300.0)  # after stage 1 reached the customer
    empty_after_s: tuple[float, float] = (90.0, 400.0)
    drop_share: tuple[float, float] = (0.10, 0.20)  # a price drop lowers by 10–20 % (R-T6.2 needs > 5 %)
    rise_share: tuple[float, float] = (0.05, 0.15)
    floor_share: float = 0.6  # a price below this share of the list price goes back to the list price
    open_carts_kept: int = 1000  # open carts remembered for price changes
    # An abandoned cart left open is cleared by the shop (emptied) this long after the demo abandoned it: open
    # carts — and the price drops reaching them — stay few; stage 2 shows with the day-old carts instead.
    open_cart_lifetime_s: float = 4 * 3600


def iso(at: datetime) -> str:
    """UTC ISO-8601 with milliseconds and a `Z`."""
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Customer:
    external_id: str | None
    phone: str
    name: str | None
    country: Country
    birthday: str | None = None

    def contact(self, *, full: bool = True) -> dict[str, Any]:
        """The event's `contact`: identity always, profile fields when `full`."""
        out: dict[str, Any] = {"phone": self.phone}
        if self.external_id:
            out["external_id"] = self.external_id
        if full:
            if self.name:
                out["name"] = self.name
            out["locale"] = self.country.locale
            out["timezone"] = self.country.timezone
            if self.birthday:
                out["birthday"] = self.birthday
        return out

    @property
    def language(self) -> str:
        return self.country.names


@dataclass(order=True, slots=True)
class _Due:
    at: datetime
    seq: int
    event: Event = field(compare=False)


@dataclass(slots=True)
class _Order:
    order_id: str
    customer: Customer
    amount: float
    currency: str


class DemoShop:
    """A shop's worth of customers, carts and orders, driven by a seeded RNG and the caller's clock."""

    def __init__(self, seed: int | None = None, *, account_id: str = "100000000000001", odds: Odds | None = None,
                 max_customers: int = 5000, timing: Timing | None = None, pace: Pace | None = None) -> None:
        self.rng = random.Random(seed)
        self.odds = odds or Odds()
        self.timing = timing or Timing()
        self.pace = pace or Pace()
        self.account_id = account_id
        # Ids carry a per-run prefix (~330k of them) so a restarted demo does not reuse order numbers.
        self._prefix = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(4))
        self._max_customers = max_customers
        self._customers: list[Customer] = []
        self._orders: deque[_Order] = deque(maxlen=2000)
        self._prices = {p.sku: p.price for p in PRODUCTS}
        self._open_carts: dict[str, tuple[list[str], datetime]] = {}  # cart_id -> SKUs, cleared at; oldest first
        self._paced_at: dict[str, datetime] = {}  # paced activity -> when it is next due (absent: not started)
        self._abandoned = 0
        self._price_changes = 0
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._order_no = itertools.count(1)
        self._cart_no = itertools.count(1)
        self._customer_no = itertools.count(1)
        self._activities = [a for a, _ in ACTIVITY]
        self._weights = [w for _, w in ACTIVITY]

    # ---------- the one public step ----------

    def emit(self, now: datetime, count: int) -> list[Event]:
        """Exactly `count` events for `now`: due follow-ups first, then fresh activity."""
        out: list[Event] = []
        while len(out) < count and self._due and self._due[0].at <= now:
            out.append(heapq.heappop(self._due).event)
        while len(out) < count:
            out.append(self._fresh(now))
        return out

    @property
    def pending(self) -> int:
        """Follow-ups scheduled for later."""
        return len(self._due)

    # ---------- fresh activity ----------

    def _fresh(self, now: datetime) -> Event:
        kind = self._paced_due(now)
        if kind is None:
            # (no customers yet only when contacts are not paced: a payment brings the first one)
            kind = "payment.succeeded" if not self._customers else self.rng.choices(self._activities, self._weights)[0]
        if kind == "order.returned" and not self._orders:
            kind = "payment.succeeded"
        return getattr(self, "_" + kind.replace(".", "_"))(now)

    def _paced_due(self, now: datetime) -> str | None:
        """The paced activity (`PACED`) due at `now`, if any, its next time drawn; the clock's first reading starts
        each one's pace (`Pace.first_after_s`). A shop without customers yet creates one first."""
        for kind, first in zip(PACED, self.pace.first_after_s, strict=True):
            per_hour = self.pace.per_hour(kind)
            if per_hour <= 0:
                continue
            due = self._paced_at.setdefault(kind, now + timedelta(seconds=first))
            if now >= due and (self._customers or kind == "contact.created"):
                self._paced_at[kind] = now + timedelta(seconds=3600 / per_hour * self.rng.uniform(0.5, 1.5))
                return kind
        return None

    def _contact_created(self, now: datetime) -> Event:
        first = not self._customers  # a run's first contact opts in: its welcome shows at once
        customer = self._new_customer(with_external_id=True)
        self._remember(customer)
        data: dict[str, Any] = {}
        if self.rng.random() < 0.8 or first:
            data["opted_in"] = self.rng.random() < 0.9 or first
        if self.rng.random() < 0.4:
            data["tags"] = self.rng.sample(TAGS, self.rng.randint(1, 2))
        if self.rng.random() < 0.3:
            data["attributes"] = {"source": self.rng.choice(["instagram", "newsletter", "checkout", "store"])}
        return self._event("cst", "contact.created", now, customer.contact(), data)

    def _contact_updated(self, now: datetime) -> Event:
        customer = self.rng.choice(self._customers)
        data: dict[str, Any] = {"preferences": {"channel": "whatsapp"}}
        if self.rng.random() < 0.5:
            data["opted_in"] = self.rng.random() < 0.85
        if self.rng.random() < 0.5:
            data["attributes"] = {"loyalty_points": self.rng.randrange(0, 5000)}
        return self._event("cup", "contact.updated", now, customer.contact(), data)

    def _cart_updated(self, now: datetime) -> Event:
        customer = self._some_customer()
        cart_id = f"cart-{self._prefix}{next(self._cart_no):06d}"
        lines = self._lines(max_items=4)
        event = self._cart_event(now, customer, cart_id, lines)
        if self.rng.random() < self.odds.cart_checkout:
            at = now + timedelta(seconds=self.rng.uniform(10, 90))
            self._payment_at(at, at, customer, lines, cart_id=cart_id, scheduled=True)
        else:
            at = now + timedelta(seconds=self.rng.uniform(20, 120))
            self._schedule(at, self._cart_event(at, customer, cart_id, []))
        return event

    def _cart_abandoned(self, now: datetime) -> Event:
        """A `cart.updated` back-dated so reminder stage 1 (or, for a day-old one, stage 2) is due at once;
        bought back or emptied a few minutes later, or left open (R-T6)."""
        timing, odds = self.timing, self.odds
        customer = self._some_customer()
        cart_id = f"cart-{self._prefix}{next(self._cart_no):06d}"
        lines = self._lines(max_items=4, premium=self.rng.random() < odds.big_cart)
        self._abandoned += 1
        day_old = self.rng.random() < odds.abandoned_day_old or (self._abandoned == 2 and odds.abandoned_day_old > 0)
        age = timing.abandoned_day_age_s if day_old else timing.abandoned_age_s
        updated = now - timedelta(seconds=age)
        event = self._cart_event(updated, customer, cart_id, lines)
        roll = self.rng.random() if self._abandoned > 1 else 1.0  # a run's first one stays open (a price drop)
        if roll < odds.abandoned_bought_back:
            at = now + timedelta(seconds=self.rng.uniform(*timing.buy_back_after_s))
            self._payment_at(at, at, customer, lines, cart_id=cart_id, scheduled=True)
        elif roll < odds.abandoned_bought_back + odds.abandoned_emptied:
            at = now + timedelta(seconds=self.rng.uniform(*timing.empty_after_s))
            self._schedule(at, self._cart_event(at, customer, cart_id, []))
        else:
            cleared = now + timedelta(seconds=timing.open_cart_lifetime_s)
            self._schedule(cleared, self._cart_event(cleared, customer, cart_id, []))
            self._keep_open(cart_id, lines, cleared)
        return event

    def _keep_open(self, cart_id: str, lines: list[tuple[Product, int]], cleared: datetime) -> None:
        """Remember a cart nobody pays or empties before the shop clears it at `cleared`, for price changes of
        what sits in it."""
        self._open_carts[cart_id] = ([p.sku for p, _ in lines], cleared)
        while len(self._open_carts) > self.timing.open_carts_kept:
            del self._open_carts[next(iter(self._open_carts))]

    def _payment_succeeded(self, now: datetime) -> Event:
        customer = self._some_customer(guest=self.rng.random() < self.odds.guest_checkout)
        occurred = now
        if self.rng.random() < self.odds.late:
            occurred = now - timedelta(seconds=self.rng.uniform(120, 600))
        lines = self._lines(max_items=5, premium=self.rng.random() < self.odds.big_order)
        return self._payment_at(now, occurred, customer, lines, cart_id=None)

    def _payment_failed(self, now: datetime) -> Event:
        customer = self._some_customer()
        lines = self._lines(max_items=3)
        data = self._payment_data(f"{self._prefix}{next(self._order_no):06d}", customer, lines, cart_id=None)
        return self._event("pfl", "payment.failed", now, customer.contact(full=False), data)

    def _message_inbound(self, now: datetime) -> Event:
        customer = self.rng.choice(self._customers)
        texts = INBOUND_TEXTS.get(customer.language, INBOUND_TEXTS["en"])
        text = self.rng.choice(texts[:-1]) if self.rng.random() > 0.02 else texts[-1]
        return self._event("msg", "message.inbound", now, customer.contact(full=False),
                           {"text": text, "account_id": self.account_id})

    def _feedback_submitted(self, now: datetime) -> Event:
        customer = self.rng.choice(self._customers)
        rating = self.rng.choices(range(1, 6), RATING_WEIGHTS)[0]
        data: dict[str, Any] = {"rating": rating}
        if self.rng.random() < 0.6:
            data["text"] = self.rng.choice(FEEDBACK_TEXTS[rating])
        return self._event("fbk", "feedback.submitted", now, customer.contact(full=False), data)

    def _product_price_changed(self, now: datetime) -> Event:
        """A price change about a product, naming no person: mostly a SKU sitting in an open cart, lowered by
        10–20 % (R-T6.2); sometimes raised, and a price far below the list price goes back to it."""
        timing = self.timing
        carted = sorted({sku for skus, cleared in self._open_carts.values() if cleared > now for sku in skus})
        by_sku = {p.sku: p for p in PRODUCTS}
        self._price_changes += 1
        first = self._price_changes == 1  # a run's first price change shows a price drop: a carted SKU, lowered
        if carted and (self.rng.random() < self.odds.price_of_carted_sku or first):
            product = by_sku[self.rng.choice(carted)]
        else:
            product = self.rng.choice(PRODUCTS)
        old = self._prices[product.sku]
        if old < product.price * timing.floor_share:
            new = product.price  # back to list price
        elif self.rng.random() < self.odds.price_rise and not first:
            new = round(old * (1 + self.rng.uniform(*timing.rise_share)), 2)
        else:
            new = round(old * (1 - self.rng.uniform(*timing.drop_share)), 2)
        self._prices[product.sku] = new
        return self._event("prc", "product.price_changed", now, None,
                           {"sku": product.sku, "old_price": old, "new_price": new})

    def _order_returned(self, now: datetime) -> Event:
        order = self.rng.choice(self._orders)
        amount = round(order.amount * self.rng.choice([1.0, 0.5, 0.3]), 2)
        return self._event("ret", "order.returned", now, order.customer.contact(full=False),
                           {"order_id": order.order_id, "amount": amount})

    # ---------- payments and their follow-ups ----------

    def _payment_at(self, at: datetime, occurred: datetime, customer: Customer,
                    lines: list[tuple[Product, int]], *, cart_id: str | None, scheduled: bool = False) -> Event:
        """A payment sent at `at` (scheduled for then when `scheduled`), its duplicates, re-send and shipments."""
        order_id = f"{self._prefix}{next(self._order_no):06d}"
        data = self._payment_data(order_id, customer, lines, cart_id=cart_id)
        event = self._event("pay", "payment.succeeded", occurred, customer.contact(), data)
        self._orders.append(_Order(order_id, customer, data["amount"], data["currency"]))
        if scheduled:
            self._schedule(at, event)
        if self.rng.random() < self.odds.duplicate:
            self._schedule(at + timedelta(seconds=self.rng.uniform(0.5, 5)), dict(event))
        if self.rng.random() < self.odds.resend:
            resend = dict(event, event_id=self._event_id("pay"))
            self._schedule(at + timedelta(seconds=self.rng.uniform(120, 480)), resend)
        self._schedule_shipments(at, order_id, customer)
        return event

    def _payment_data(self, order_id: str, customer: Customer, lines: list[tuple[Product, int]], *,
                      cart_id: str | None) -> dict[str, Any]:
        country = customer.country
        subtotal = round(sum(self._prices[p.sku] * q for p, q in lines), 2)
        shipping = 0.0 if subtotal >= country.free_shipping_from else country.shipping
        if country.sales_tax:
            tax = round(subtotal * country.sales_tax, 2)
            amount = round(subtotal + tax + shipping, 2)
        else:
            amount = round(subtotal + shipping, 2)
            tax = round(amount * country.vat / (1 + country.vat), 2)
        data: dict[str, Any] = {
            "order_id": order_id, "amount": amount, "currency": country.currency, "tax": tax,
            "shipping": shipping, "region": country.code,
            "items": [{"sku": p.sku, "name": p.name, "category": p.category, "price": self._prices[p.sku],
                       "quantity": q} for p, q in lines],
        }
        if cart_id:
            data["cart_id"] = cart_id
        return data

    def _schedule_shipments(self, paid_at: datetime, order_id: str, customer: Customer) -> None:
        carrier = self.rng.choice(customer.country.carriers)
        tracking_no = "".join(self.rng.choice("0123456789") for _ in range(14))
        url = f"https://track.example/{carrier.lower().replace(' ', '-').replace('.', '')}/{tracking_no}"
        at = paid_at
        for status, (low, high) in (("shipped", (30, 120)), ("out_for_delivery", (60, 180)),
                                    ("delivered", (30, 150))):
            at = at + timedelta(seconds=self.rng.uniform(low, high))
            data = {"order_id": order_id, "status": status, "carrier": carrier, "tracking_url": url}
            self._schedule(at, self._event("shp", "shipment.updated", at, customer.contact(full=False), data))

    def _cart_event(self, at: datetime, customer: Customer, cart_id: str, lines: list[tuple[Product, int]]) -> Event:
        items = [{"sku": p.sku, "name": p.name, "category": p.category, "price": self._prices[p.sku], "quantity": q,
                  "stock": self.rng.randrange(0, 40), "image_url": f"{SHOP_URL}/img/{p.sku.lower()}.jpg"}
                 for p, q in lines]
        data = {"cart_id": cart_id, "items": items,
                "total": round(sum(self._prices[p.sku] * q for p, q in lines), 2),
                "currency": customer.country.currency, "checkout_url": f"{SHOP_URL}/checkout/{cart_id}"}
        return self._event("crt", "cart.updated", at, customer.contact(full=False), data)

    # ---------- helpers ----------

    def _schedule(self, at: datetime, event: Event) -> None:
        heapq.heappush(self._due, _Due(at, next(self._seq), event))

    def _event_id(self, kind: str) -> str:
        return f"{kind}-{self.rng.getrandbits(64):016x}"

    def _event(self, kind: str, type_: str, occurred: datetime, contact: dict[str, Any] | None,
               data: dict[str, Any]) -> Event:
        """A CONTRACT §2 event; no `contact` key when `contact` is None (a price change names no person)."""
        event: Event = {"event_id": self._event_id(kind), "type": type_, "occurred_at": iso(occurred)}
        if contact is not None:
            event["contact"] = contact
        event["data"] = data
        return event

    def _lines(self, *, max_items: int, premium: bool = False) -> list[tuple[Product, int]]:
        """1..max_items distinct products with quantities; with `premium`, one of them costs at least
        PREMIUM_FROM (a big cart or order)."""
        n = self.rng.choices(range(1, max_items + 1), [0.45, 0.25, 0.15, 0.1, 0.05][:max_items])[0]
        products = self.rng.sample(PRODUCTS, n)
        if premium and not any(p.price >= PREMIUM_FROM for p in products):
            products[0] = self.rng.choice([p for p in PRODUCTS if p.price >= PREMIUM_FROM and p not in products])
        return [(p, self.rng.choices((1, 2, 3), (0.8, 0.15, 0.05))[0]) for p in products]

    def _some_customer(self, *, guest: bool = False) -> Customer:
        if guest or not self._customers or self.rng.random() < 0.1:
            customer = self._new_customer(with_external_id=not guest)
            self._remember(customer)
            return customer
        return self.rng.choice(self._customers)

    def _remember(self, customer: Customer) -> None:
        if len(self._customers) < self._max_customers:
            self._customers.append(customer)
        else:
            self._customers[self.rng.randrange(self._max_customers)] = customer

    def _new_customer(self, *, with_external_id: bool) -> Customer:
        country = self.rng.choices(COUNTRIES, [c.weight for c in COUNTRIES])[0]
        name = None
        if self.rng.random() >= self.odds.no_name:
            first = self.rng.choice(FIRST_NAMES[country.names])
            name = first if self.rng.random() < 0.2 else f"{first} {self.rng.choice(LAST_NAMES[country.names])}"
        birthday = None
        if self.rng.random() < 0.3:
            birthday = date(self.rng.randint(1950, 2006), self.rng.randint(1, 12), self.rng.randint(1, 28)).isoformat()
        external_id = f"cust-{self._prefix}{next(self._customer_no):06d}" if with_external_id else None
        return Customer(external_id, self._phone(country), name, country, birthday)

    def _phone(self, country: Country) -> str:
        """A valid mobile number of the country (numbers failing validation are redrawn)."""
        for _ in range(50):
            prefix, digits = self.rng.choice(country.phone_prefixes)
            first = str(self.rng.randint(2, 9)) if prefix.startswith("+1") else str(self.rng.randrange(10))
            number = prefix + first + "".join(str(self.rng.randrange(10)) for _ in range(digits - 1))
            try:
                return to_e164(number)
            except InvalidPhoneNumber:
                continue
        return to_e164(f"+49151{self.rng.randrange(10**8):08d}")  # always valid
