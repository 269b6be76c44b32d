"""R-T2 order confirmation: content, delivery estimate, one per order."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from scrm_common.contracts.events import PaymentSucceeded
from trigger_engine.domain.copy import format_locale, money, url_with
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings, Region, Templates
from trigger_engine.domain.text import clean_text, shorten

FLOW = "order_confirmation"

# R-T2.3 "near": the EU (and `EU` itself) as seen from a German shop.
NEAR_REGIONS = ("AT", "BE", "BG", "CY", "CZ", "DK", "EE", "ES", "EU", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT",
                "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")


class OrderConfirmationSettings(FlowSettings):
    """R-T2: the order confirmation at once, exactly one per order. Its template's parameters: order number,
    items, total, tax, shipping, delivery days, tracking link, support link (the links are the tenant's)."""

    templates: Templates = Field(default_factory=lambda: {"en_US": "order_confirmation", "de": "order_confirmation"},
                                 description="template per language")
    max_items: int = Field(default=3, ge=1, le=10, description="main items named, the most valuable first (R-T2.2)")
    max_body_chars: int = Field(default=210, ge=60, le=1024, description="the body stays under this (R-T2.2)")
    template_text_chars: int = Field(default=96, ge=0, le=1024,
                                     description="the template's own text without its variables (longest language)")
    item_name_chars: int = Field(default=24, ge=6, le=200, description="an item's name is cut to this")
    near_regions: list[Region] = Field(default_factory=lambda: list(NEAR_REGIONS), max_length=300,
                                       description="regions with the `near` base days (R-T2.3)")
    base_days_home: int = Field(default=1, ge=0, le=60, description="base working days in the home region (R-T2.3)")
    base_days_near: int = Field(default=3, ge=0, le=60, description="base working days to a near region (R-T2.3)")
    base_days_far: int = Field(default=5, ge=0, le=60, description="base working days elsewhere (R-T2.3)")
    buffer_days: int = Field(default=2, ge=0, le=60, description="added to the base days (R-T2.3)")
    # R-T2.1 is a latency target; a confirmation arriving late is still wanted, a day late is not.
    expire_after_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60,
                                      description="a confirmation later than this after the payment is not sent")


def delivery_window(region: str | None, config: OrderConfirmationSettings, home_region: str = "DE") -> tuple[int, int]:
    """R-T2.3: working days (from, to) = base days by region (the shop's `home_region`, a near one, any
    other), plus the buffer days."""
    code = (region or home_region).upper()
    if code == home_region.upper():
        base = config.base_days_home
    elif code in config.near_regions:
        base = config.base_days_near
    else:
        base = config.base_days_far
    return base, base + config.buffer_days


# The item line of an order without line items (a custom amount), longest wording first: the
# template then reads "Order A-1 confirmed: payment received. Total €50.00 (…)".
NO_ITEMS: dict[str, tuple[str, ...]] = {
    "de": ("Zahlung erhalten", "bezahlt", "✓"),
    "en": ("payment received", "paid", "✓"),
}


def item_summary(event: PaymentSucceeded, config: OrderConfirmationSettings, language: str, *, budget: int) -> str:
    """R-T2.2: at most three main items (the most valuable first), as many as fit `budget` characters.

    No items at all (a custom amount) is never "0 items": the longest NO_ITEMS wording that fits.
    """
    german = language.startswith("de")
    items = sorted(event.data.items, key=lambda i: i.price * i.quantity, reverse=True)
    if not items:
        wordings = NO_ITEMS["de" if german else "en"]
        return next((w for w in wordings if len(w) <= budget), wordings[-1])
    more = "+{n} weitere" if german else "+{n} more"
    shown: list[str] = []
    for item in items[: config.max_items]:
        name = _plain(item.name)
        hidden_after = len(items) - len(shown) - 1
        tail = " " + more.format(n=hidden_after) if hidden_after else ""
        prefix = ", ".join([*shown, ""]) + f"{item.quantity}× "
        room = min(config.item_name_chars, budget - len(prefix) - len(tail))
        if not name or room < min(config.item_name_chars, len(name), 6):
            break  # not even a recognisable name fits: count it among the hidden
        shown.append(f"{item.quantity}× {shorten(name, room)}")
    hidden = len(items) - len(shown)
    if not shown:
        count = sum(i.quantity for i in items)
        text = f"{count} Artikel" if german else f"{count} item{'s' if count != 1 else ''}"
        return text if len(text) <= budget else str(count)
    return ", ".join(shown) + (" " + more.format(n=hidden) if hidden else "")


def _plain(name: str) -> str:
    """A product name as message text: one line, no invisible characters, braces and the count sign
    defused."""
    return clean_text(name.replace("×", "x"), marks=True)


def idempotency_key(tenant: str, order_id: str) -> str:
    """One confirmation per order, whichever event or contact identity reports the payment."""
    return f"{tenant}|{FLOW}|{order_id}"


def decide_order_confirmation(
    profile: ContactProfile, event: PaymentSucceeded, now: datetime, config: EngineConfig
) -> tuple[Decision, ...]:
    """Confirm the order at once, unless disabled, unreachable or a day too late.

    A utility message (R-T2): the send gate's quiet hours, cap and fatigue do not hold it back (it still carries
    the tenant's policy, stamped by `decide`). Its `expires_at` is the payment's `occurred_at` +
    `expire_after_minutes`: what the setting promises here ("not sent later than this") the sender keeps too.
    """
    flow_config = config.flow(FLOW, OrderConfirmationSettings)
    shop = config.settings
    key = idempotency_key(config.tenant, event.data.order_id)
    if not flow_config.enabled:
        return (Suppress(FLOW, "flow disabled", profile.contact_key, key),)
    expire_after = timedelta(minutes=flow_config.expire_after_minutes)
    expires = event.occurred_at + expire_after
    if now > expires:
        return (Suppress(FLOW, f"expired: payment is older than {expire_after}", profile.contact_key,
                         key, outcome="expired"),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", profile.contact_key, key),)
    language = config.language_for(profile.locale, flow_config.templates)
    if language not in flow_config.templates:
        return (Suppress(FLOW, f"no order_confirmation template for language {language}", profile.contact_key,
                         key),)
    locale = format_locale(profile.locale, language)
    data = event.data
    order_id = clean_text(data.order_id)
    days_from, days_to = delivery_window(data.region, flow_config, shop.home_region)
    others = (
        money(data.amount, data.currency, locale),
        money(data.tax, data.currency, locale),
        money(data.shipping, data.currency, locale),
        f"{days_from}–{days_to}",
        url_with(shop.tracking_url, order_id=data.order_id),
        shop.support_url,
    )
    # R-T2.2: the whole body stays under max_body_chars; the item list gets what the rest leaves.
    fixed = flow_config.template_text_chars + len(order_id) + sum(map(len, others))
    budget = flow_config.max_body_chars - 1 - fixed
    parameters = (order_id, item_summary(event, flow_config, language, budget=budget), *others)
    return (Send(FLOW, key, "utility", profile.contact_key, profile.phone, flow_config.templates[language], language,
                 parameters, config.account_for(flow_config), expires_at=expires),)
