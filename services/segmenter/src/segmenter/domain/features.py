"""A contact's features folded from its events: `evolve(features, event) -> features`, `merge(a, b)`.

Every fold is order-independent where it can be (min/max of timestamps, orders deduplicated by
order_id), so redelivered or reordered events converge on the same features.

Identity fields (issue 5): `name` is the shop's name for the person and is never overwritten by the
WhatsApp profile name, which is kept in `profile_name`. `phone` is the person's current number: set by
the shop (an event naming an external id), by `contact.number_changed`, or by WhatsApp when nothing
else gave one. `wa_id` is the WhatsApp id of that number, learned from events that carry both.
Money is exact: amounts are Decimals in their currency's ISO 4217 minor units.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict

from scrm_common.contracts.events import (
    Contact,
    ContactCreated,
    ContactNumberChanged,
    ContactUpdated,
    Event,
    FeedbackSubmitted,
    LinkClicked,
    MessageInbound,
    MessageStatus,
    OrderReturned,
    PaymentSucceeded,
)
from scrm_common.identity import match_key
from scrm_common.money import exact_amount
from segmenter.domain.aliases import valid_phone
from segmenter.domain.currency import ZERO


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OrderFact(_Frozen):
    """One order of the contact: paid (payment.succeeded) and/or returned (order.returned).

    `amount` and `returned` are exact, in the order's currency (its ISO 4217 minor units).
    """

    order_id: str
    amount: Decimal | None = None
    currency: str | None = None
    paid_at: datetime | None = None
    returned: Decimal = ZERO
    returned_at: datetime | None = None

    @property
    def paid(self) -> bool:
        return self.paid_at is not None

    @property
    def net(self) -> Decimal:
        """What the order is worth after returns; a return never makes an order negative."""
        if self.amount is None:
            return ZERO
        return self.amount - min(self.returned, self.amount)


class ContactFeatures(_Frozen):
    """Everything the segmenter knows about one contact of one tenant.

    `external_id` is the shop's first id for the person (the contact's key once known);
    `external_ids` every id the shop used for them (aliases, sorted).
    """

    external_id: str | None = None
    external_ids: tuple[str, ...] = ()
    phone: str | None = None
    wa_id: str | None = None
    user_id: str | None = None
    name: str | None = None
    profile_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    birthday: date | None = None
    opted_in: bool | None = None
    first_seen: datetime | None = None
    last_event_at: datetime | None = None
    last_inbound_at: datetime | None = None
    last_read_at: datetime | None = None
    last_click_at: datetime | None = None
    last_rating: int | None = None
    last_rating_at: datetime | None = None
    inbound_messages: int = 0
    link_clicks: int = 0
    order_history: tuple[OrderFact, ...] = ()

    @property
    def interactions(self) -> int:
        """Inbound messages plus link clicks."""
        return self.inbound_messages + self.link_clicks

    @property
    def paid_orders(self) -> tuple[OrderFact, ...]:
        return tuple(o for o in self.order_history if o.paid)

    @property
    def orders(self) -> int:
        """Distinct orders paid (payment.succeeded)."""
        return len(self.paid_orders)

    @property
    def display_name(self) -> str | None:
        """The shop's name for the person; the WhatsApp profile name only when the shop gave none."""
        return self.name or self.profile_name

    def spend_by_currency(self, paid_since: datetime | None = None) -> dict[str, Decimal]:
        """Net spend per currency of distinct paid orders (paid at or after `paid_since`), never mixed."""
        out: dict[str, Decimal] = {}
        for o in self.paid_orders:
            if o.currency is None or (paid_since is not None and o.paid_at is not None and o.paid_at < paid_since):
                continue
            out[o.currency] = out.get(o.currency, ZERO) + o.net
        return out

    @property
    def returns(self) -> int:
        """Orders with a return."""
        return sum(1 for o in self.order_history if o.returned_at is not None)

    @property
    def first_order_at(self) -> datetime | None:
        return _min(*(o.paid_at for o in self.order_history))

    @property
    def last_order_at(self) -> datetime | None:
        return _max(*(o.paid_at for o in self.order_history))

    @property
    def last_return_at(self) -> datetime | None:
        return _max(*(o.returned_at for o in self.order_history))


def _min(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _max(*values: datetime | None) -> datetime | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _same_number(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and match_key(a) == match_key(b)


def _profile(features: ContactFeatures, contact: Contact) -> dict[str, object]:
    """Contact fields an event carries update the profile; absent fields leave it as it is.

    The shop's word (an event naming an external id) sets the phone; WhatsApp only fills it when
    none is known. A wa_id paired with the current phone (the send response's mapping) replaces the
    old one; otherwise a wa_id only fills a gap. A new phone drops a wa_id that belongs to another number.
    """
    out: dict[str, object] = {}
    for f in ("user_id", "name", "profile_name", "locale", "timezone", "birthday"):
        value = getattr(contact, f)
        if value is not None and value != getattr(features, f):
            out[f] = value
    if contact.external_id is not None:
        if features.external_id is None:
            out["external_id"] = contact.external_id
        if contact.external_id not in features.external_ids:
            out["external_ids"] = tuple(sorted({*features.external_ids, contact.external_id}))
    phone = features.phone
    if contact.phone is not None and (phone is None or contact.external_id is not None):
        phone = contact.phone
    if phone != features.phone:
        out["phone"] = phone
    wa_id = features.wa_id
    if contact.wa_id is not None and (wa_id is None or contact.phone == phone):
        wa_id = contact.wa_id
    elif phone != features.phone and not _same_number(wa_id, phone):
        wa_id = None  # the number changed; its old wa_id names the old number
    if wa_id != features.wa_id:
        out["wa_id"] = wa_id
    return out


def _with_order(features: ContactFeatures, order: OrderFact) -> tuple[OrderFact, ...]:
    others = [o for o in features.order_history if o.order_id != order.order_id]
    return tuple(sorted([*others, order], key=lambda o: o.order_id))


def _order(features: ContactFeatures, order_id: str) -> OrderFact:
    for o in features.order_history:
        if o.order_id == order_id:
            return o
    return OrderFact(order_id=order_id)


def evolve(features: ContactFeatures, event: Event, *, by_message: bool = False) -> ContactFeatures:
    """The contact's features after `event` (already deduplicated by event_id upstream).

    Events without a contact (account and template updates) leave the features as they are.
    `by_message`: the event (a `message.status`) was matched to this contact by the message it reports on,
    its recipient being missing or unknown (issue 5); it applies, but its recipient says nothing about
    who the person is (no phone, wa_id or name is taken from it).
    """
    if event.contact is None and not by_message:
        return features
    at = event.occurred_at
    changes: dict[str, object] = {} if by_message or event.contact is None else _profile(features, event.contact)
    changes["first_seen"] = _min(features.first_seen, at)
    changes["last_event_at"] = _max(features.last_event_at, at)
    match event:
        case ContactCreated() | ContactUpdated() if event.data.opted_in is not None:
            changes["opted_in"] = event.data.opted_in
        case MessageInbound():
            # R-G1 / R-G7: a reply of any type (text, image, reaction, location, button …) is a reply.
            changes["inbound_messages"] = features.inbound_messages + 1
            changes["last_inbound_at"] = _max(features.last_inbound_at, at)
        case ContactNumberChanged():
            # The person moved to a new number; the old one stays an alias (the roster keeps it).
            new = event.data.new_wa_id
            changes["wa_id"] = new
            changes["phone"] = valid_phone(new) or f"+{new}"
        case MessageStatus() if event.data.status == "read":
            changes["last_read_at"] = _max(features.last_read_at, at)
        case LinkClicked():
            changes["link_clicks"] = features.link_clicks + 1
            changes["last_click_at"] = _max(features.last_click_at, at)
        case PaymentSucceeded():
            order = _order(features, event.data.order_id)
            # A payment signal arriving twice is one order (R-T2.4); the earliest signal dates it.
            if order.paid_at is None or at < order.paid_at:
                currency = event.data.currency
                order = order.model_copy(update={"amount": exact_amount(event.data.amount, currency),
                                                 "currency": currency, "paid_at": at,
                                                 "returned": _in_currency(order.returned, currency)})
                changes["order_history"] = _with_order(features, order)
        case OrderReturned():
            # A return states how much of the order has come back in total: the largest one counts,
            # so a repeated return signal is not subtracted twice.
            order = _order(features, event.data.order_id)
            returned = exact_amount(event.data.amount, order.currency)
            order = order.model_copy(update={"returned": max(order.returned, returned),
                                             "returned_at": _max(order.returned_at, at)})
            changes["order_history"] = _with_order(features, order)
        case FeedbackSubmitted() if features.last_rating_at is None or at >= features.last_rating_at:
            changes["last_rating"] = event.data.rating
            changes["last_rating_at"] = at
        case _:
            pass
    return features.model_copy(update=changes)


def _in_currency(amount: Decimal, currency: str) -> Decimal:
    """A return recorded before its order's currency was known, now in that currency's minor units."""
    return exact_amount(amount, currency) if amount else amount


def _merge_order(a: OrderFact, b: OrderFact) -> OrderFact:
    paid = a if b.paid_at is None or (a.paid_at is not None and a.paid_at <= b.paid_at) else b
    return OrderFact(order_id=a.order_id, amount=paid.amount, currency=paid.currency, paid_at=paid.paid_at,
                     returned=max(a.returned, b.returned), returned_at=_max(a.returned_at, b.returned_at))


def merge(primary: ContactFeatures, other: ContactFeatures) -> ContactFeatures:
    """One person known as two contacts (two identities) becomes one; `primary` wins ties."""
    orders = {o.order_id: o for o in other.order_history}
    for o in primary.order_history:
        orders[o.order_id] = _merge_order(o, orders[o.order_id]) if o.order_id in orders else o
    rating_from = primary if (other.last_rating_at is None or (
        primary.last_rating_at is not None and primary.last_rating_at >= other.last_rating_at)) else other
    profile = ("external_id", "phone", "wa_id", "user_id", "name", "profile_name", "locale", "timezone",
               "birthday", "opted_in")
    return ContactFeatures(
        **{f: getattr(primary, f) if getattr(primary, f) is not None else getattr(other, f) for f in profile},
        external_ids=tuple(sorted({*primary.external_ids, *other.external_ids})),
        first_seen=_min(primary.first_seen, other.first_seen),
        last_event_at=_max(primary.last_event_at, other.last_event_at),
        last_inbound_at=_max(primary.last_inbound_at, other.last_inbound_at),
        last_read_at=_max(primary.last_read_at, other.last_read_at),
        last_click_at=_max(primary.last_click_at, other.last_click_at),
        last_rating=rating_from.last_rating,
        last_rating_at=rating_from.last_rating_at,
        inbound_messages=primary.inbound_messages + other.inbound_messages,
        link_clicks=primary.link_clicks + other.link_clicks,
        order_history=tuple(sorted(orders.values(), key=lambda o: o.order_id)),
    )
