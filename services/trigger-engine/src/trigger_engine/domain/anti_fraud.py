"""R-T2.5 anti-fraud notice: orders above a per-currency threshold get a short notice 24 h after the confirmation.

"After the confirmation": the notice follows only a confirmation that was sent. A payment whose order
confirmation is not decided as a send in the same decision (its flow disabled, the payment older than the
confirmation's `expire_after_minutes`, no phone, no template, no account) schedules no notice — a customer told
"if you didn't place this order…" about an order never confirmed to them would be alarmed for nothing.

The payment schedules a durable timer (`Schedule`, key `{tenant}|anti_fraud_notice|{order_id}`) due 24 h after the
payment's `occurred_at`; `order.returned` (a return or a refund) cancels it and withdraws a notice still waiting
at the sender. When the timer fires, `anti_fraud_on_timer` re-reads the order from memory slot `orders` (order id
→ amount, currency, paid_at, returned) and sends, unless the order was returned meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import Field

from scrm_common.contracts.events import Event, OrderReturned, PaymentSucceeded
from trigger_engine.domain.copy import format_locale, money
from trigger_engine.domain.decisions import Cancel, Decision, Schedule, Send, Suppress, Withdraw
from trigger_engine.domain.links import tracked_link
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.order_confirmation import decide_order_confirmation
from trigger_engine.domain.settings import FlowSettings, Templates
from trigger_engine.domain.text import clean_text
from trigger_engine.domain.timers import Timer

FLOW = "anti_fraud_notice"
SLOT = "orders"
RETURNED = "cancelled: order returned"
NOT_CONFIRMED = "no order confirmation was sent"  # the Suppress reason's start when the confirmation did not go
KEEP_ORDERS = timedelta(days=60)  # an order is remembered this long after its payment (the notice is due after 24 h)
MAX_ORDERS = 100  # orders remembered per person (the oldest payments go first)

CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code: `JPY`")]

# R-T2.5 says "above 300 (currency units)": right for EUR, USD, GBP, CHF and the like; for a currency whose unit
# is worth far less, 300 units would put every order under watch. These defaults are about the value of EUR 300
# (rounded, 2025 rates) — a tenant sets its own per currency.
LOW_VALUE_THRESHOLDS: dict[str, float] = {
    "JPY": 50_000, "KRW": 450_000, "HUF": 120_000, "INR": 27_000, "IDR": 5_000_000, "VND": 8_000_000,
    "CLP": 300_000, "COP": 1_300_000, "ISK": 45_000, "CZK": 7_500, "PLN": 1_300, "SEK": 3_300, "NOK": 3_500,
    "DKK": 2_200, "TRY": 12_000, "MXN": 6_000, "ZAR": 6_000, "THB": 11_000, "PHP": 18_000, "TWD": 10_000,
    "CNY": 2_300, "HKD": 2_500, "BRL": 1_800, "ARS": 300_000, "RUB": 30_000, "UAH": 13_000, "NGN": 450_000,
}


class AntiFraudSettings(FlowSettings):
    """R-T2.5: an order above its currency's threshold gets a short notice `delay_hours` after the payment (the
    confirmation's time), unless returned or refunded meanwhile. Template parameters: order number, amount,
    support short link."""

    templates: Templates = Field(
        default_factory=lambda: {"en_US": "order_security_notice", "de": "order_security_notice"},
        description="template per language")
    delay_hours: float = Field(default=24.0, gt=0, le=30 * 24,
                               description="hours after the payment the notice is due (R-T2.5: 24 h)")
    default_threshold: float = Field(default=300.0, ge=0,
                                     description="orders above this amount, in the order currency's units, get the "
                                                 "notice, for any currency `thresholds` does not list (R-T2.5: 300)")
    thresholds: dict[CurrencyCode, float] = Field(
        default_factory=lambda: dict(LOW_VALUE_THRESHOLDS), max_length=300,
        description="currency → threshold in its units; defaults for low-value currencies are about EUR 300 "
                    "(JPY 50,000, KRW 450,000, HUF 120,000, INR 27,000 …)")
    expire_after_hours: float = Field(default=24.0, gt=0, le=30 * 24,
                                      description="a notice later than this after it was due is not sent")

    def threshold(self, currency: str) -> float:
        """The amount an order in `currency` must exceed (currency units)."""
        return self.thresholds.get(currency.upper(), self.default_threshold)


def idempotency_key(tenant: str, order_id: str) -> str:
    """The notice's timer key and message key: one per order."""
    return f"{tenant}|{FLOW}|{order_id}"


def above_threshold(amount: float, currency: str, settings: AntiFraudSettings) -> bool:
    """R-T2.5: True when `amount` (currency units) is strictly above the currency's threshold (300 is not)."""
    return Decimal(str(amount)) > Decimal(str(settings.threshold(currency)))


def evolve_orders(profile: ContactProfile, event: Event) -> ContactProfile:
    """The person's orders after `event` (memory slot `orders`: order id → {"amount", "currency", "paid_at" (ISO
    UTC, the earliest payment signal's `occurred_at`), "returned" (bool)}).

    `payment.succeeded` records the order (a duplicate keeps the earliest `paid_at` and a return already
    recorded); `order.returned` marks it returned (an order not seen paid is remembered as returned, so a late
    payment signal does not revive it). Orders paid more than `KEEP_ORDERS` before the event are forgotten; at
    most `MAX_ORDERS` are kept."""
    if isinstance(event, PaymentSucceeded):
        data, at = event.data, event.occurred_at
        known = dict(profile.slot(SLOT))
        before: Mapping[str, Any] = known.get(data.order_id) or {}
        paid = _at(before.get("paid_at"))
        known[data.order_id] = {"amount": data.amount, "currency": data.currency,
                                "paid_at": (min(paid, at) if paid else at).isoformat(),
                                "returned": bool(before.get("returned"))}
        return profile.with_slot(SLOT, _pruned(known, at))
    if isinstance(event, OrderReturned):
        known = dict(profile.slot(SLOT))
        before = known.get(event.data.order_id) or {"amount": event.data.amount, "currency": None, "paid_at": None}
        known[event.data.order_id] = {**before, "returned": True}
        return profile.with_slot(SLOT, _pruned(known, event.occurred_at))
    return profile


def _pruned(known: dict[str, Any], now: datetime) -> Mapping[str, Any]:
    kept = {order: value for order, value in known.items()
            if (paid := _at(value.get("paid_at"))) is None or paid >= now - KEEP_ORDERS}
    if len(kept) > MAX_ORDERS:
        newest = sorted(kept, key=lambda order: str(kept[order].get("paid_at") or ""))[-MAX_ORDERS:]
        kept = {order: kept[order] for order in newest}
    return MappingProxyType(kept)


def _at(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


def decide_anti_fraud(profile: ContactProfile, event: PaymentSucceeded, now: datetime, config: EngineConfig
                      ) -> tuple[Decision, ...]:
    """An order above its currency's threshold → a Schedule of the timer `idempotency_key(tenant, order_id)` due
    `delay_hours` after the payment (R-T2.5: 24 h; the earliest signal of the order as memory has it, so a
    duplicate signal schedules the same time), expiring `expire_after_hours` after that; payload order id,
    amount, currency and event id. An order at or below the threshold → nothing. Suppressed with the reason:
    flow disabled, the order already returned, `now` past the expiry, and — R-T2.5's notice comes "after the
    confirmation" — the payment's order confirmation not decided as a send in this same decision
    (`decide_order_confirmation` on the same profile, event, time and config: its flow disabled, `now` past the
    payment's `occurred_at` + its `expire_after_minutes`, no phone, no template, no account):
    `no order confirmation was sent: <the confirmation's reason>`."""
    settings = config.flow(FLOW, AntiFraudSettings)
    data = event.data
    if not above_threshold(data.amount, data.currency, settings):
        return ()
    key, person = idempotency_key(config.tenant, data.order_id), profile.contact_key
    if not settings.enabled:
        return (Suppress(FLOW, "flow disabled", person, key),)
    order = profile.slot(SLOT).get(data.order_id) or {}
    if order.get("returned"):
        return (Suppress(FLOW, RETURNED, person, key),)
    paid = _at(order.get("paid_at")) or event.occurred_at
    due = paid + timedelta(hours=settings.delay_hours)
    expires = due + timedelta(hours=settings.expire_after_hours)
    if now >= expires:
        return (Suppress(FLOW, f"expired: the notice was due at {due.isoformat()}", person, key, outcome="expired"),)
    unconfirmed = _not_confirmed(profile, event, now, config)
    if unconfirmed is not None:
        return (Suppress(FLOW, f"{NOT_CONFIRMED}: {unconfirmed}", person, key),)
    payload = {"order_id": data.order_id, "amount": data.amount, "currency": data.currency,
               "event_id": event.event_id}
    return (Schedule(FLOW, key, person, due, expires, payload),)


def _not_confirmed(profile: ContactProfile, event: PaymentSucceeded, now: datetime, config: EngineConfig
                   ) -> str | None:
    """Why the payment's order confirmation is not sent in this decision, or None when it is: the very decision
    `decide` takes for it (a Send no account can carry is refused there, so it is no send here either)."""
    for decision in decide_order_confirmation(profile, event, now, config):
        if isinstance(decision, Send):
            return None if decision.account_id is not None else "no WhatsApp account to carry it"
        if isinstance(decision, Suppress):
            return decision.reason
    return "the order confirmation decided nothing"


def cancel_anti_fraud(profile: ContactProfile, event: OrderReturned, now: datetime,  # noqa: ARG001
                      config: EngineConfig) -> tuple[Decision, ...]:
    """A return or refund of an order that may have a notice (above its threshold, or not known as paid) → a
    Cancel of its timer and a Withdraw of a notice still waiting at the sender, both `cancelled: order returned`;
    an order known to be at or below the threshold → nothing."""
    settings = config.flow(FLOW, AntiFraudSettings)
    order = profile.slot(SLOT).get(event.data.order_id) or {}
    currency = order.get("currency")
    if isinstance(currency, str) and not above_threshold(float(order.get("amount") or 0), currency, settings):
        return ()
    key, person = idempotency_key(config.tenant, event.data.order_id), profile.contact_key
    return (Cancel(FLOW, key, person, RETURNED),
            Withdraw(FLOW, key, person, RETURNED, config.account_for(settings)))


def anti_fraud_on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                        ) -> tuple[Decision, ...]:
    """The notice's timer fired (R-T2.5): re-check the order as of `now`. Returned meanwhile → Suppress
    `cancelled: order returned`; flow disabled, expired, no phone, no template → Suppress with the reason; else a
    utility Send (key `timer.key`; parameters: order number, amount in the order's currency as the person's
    locale writes it, a tracked short link (slot `support`) to the tenant's `support_url`), expiring at the
    timer's expiry."""
    settings = config.flow(FLOW, AntiFraudSettings)
    key, person = timer.key, profile.contact_key
    order_id = str(timer.payload.get("order_id") or "")
    order: Mapping[str, Any] = profile.slot(SLOT).get(order_id) or {}
    if not settings.enabled:
        return (Suppress(FLOW, "flow disabled", person, key),)
    if order.get("returned"):
        return (Suppress(FLOW, RETURNED, person, key),)
    if timer.expired(now):
        return (Suppress(FLOW, f"expired: the notice was due at {timer.due_at.isoformat()}", person, key,
                         outcome="expired"),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", person, key),)
    language = config.language_for(profile.locale, settings.templates)
    if language not in settings.templates:
        return (Suppress(FLOW, f"no order_security_notice template for language {language}", person, key),)
    amount = order.get("amount", timer.payload.get("amount"))
    currency = order.get("currency") or timer.payload.get("currency")
    if not isinstance(amount, int | float) or isinstance(amount, bool) or not isinstance(currency, str):
        return (Suppress(FLOW, f"order {order_id} has no amount to tell", person, key),)
    url, link = tracked_link(config, profile, key=key, flow=FLOW, slot="support", target=config.settings.support_url,
                             now=now, content="security_notice")
    parameters = (clean_text(order_id), money(amount, currency, format_locale(profile.locale, language)), url)
    expires = timer.expires_at or timer.due_at + timedelta(hours=settings.expire_after_hours)
    return (Send(FLOW, key, "utility", person, profile.phone, settings.templates[language], language, parameters,
                 config.account_for(settings), expires_at=expires, links=(link,)),)
