"""R-T2 order confirmation: content, delivery estimate, one per order."""

from __future__ import annotations

from datetime import datetime

from scrm_common.contracts.events import PaymentSucceeded
from trigger_engine.domain.copy import format_locale, money, url_with
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig, OrderConfirmationConfig
from trigger_engine.domain.text import clean_text, shorten

FLOW = "order_confirmation"


def delivery_window(region: str | None, config: OrderConfirmationConfig) -> tuple[int, int]:
    """R-T2.3: working days (from, to) = base days by region, plus the buffer days."""
    code = (region or config.home_region).upper()
    if code == config.home_region.upper():
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


def item_summary(event: PaymentSucceeded, config: OrderConfirmationConfig, language: str, *, budget: int) -> str:
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
    """Confirm the order at once, unless disabled, unreachable or a day too late."""
    flow_config = config.order_confirmation
    key = idempotency_key(config.tenant, event.data.order_id)
    if not flow_config.enabled:
        return (Suppress(FLOW, "flow disabled", profile.contact_key, key),)
    if now - event.occurred_at > flow_config.expire_after:
        return (Suppress(FLOW, f"expired: payment is older than {flow_config.expire_after}", profile.contact_key,
                         key, outcome="expired"),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", profile.contact_key, key),)
    language = config.language_for(profile.locale)
    locale = format_locale(profile.locale, language)
    data = event.data
    order_id = clean_text(data.order_id)
    days_from, days_to = delivery_window(data.region, flow_config)
    others = (
        money(data.amount, data.currency, locale),
        money(data.tax, data.currency, locale),
        money(data.shipping, data.currency, locale),
        f"{days_from}–{days_to}",
        url_with(flow_config.tracking_url, order_id=data.order_id),
        flow_config.support_url,
    )
    # R-T2.2: the whole body stays under max_body_chars; the item list gets what the rest leaves.
    fixed = flow_config.template_text_chars + len(order_id) + sum(map(len, others))
    budget = flow_config.max_body_chars - 1 - fixed
    parameters = (order_id, item_summary(event, flow_config, language, budget=budget), *others)
    return (Send(FLOW, key, "utility", profile.contact_key, profile.phone, flow_config.template, language,
                 parameters),)
