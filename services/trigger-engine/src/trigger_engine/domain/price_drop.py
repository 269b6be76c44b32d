"""R-T6.2 price drop: a price falling by more than 5 % reaches every open cart holding the item, at most twice per
item per person in 7 days.

A `product.price_changed` names no person: `decide_price_change` answers a large enough drop with one `FanOut`
(one timer per person with the SKU in an open cart, due at once), and `price_drop_on_timer` decides for each
person as of when their timer fires: the cart still open and holding the SKU, the person still reachable, fewer
than `max_per_item` price-drop messages for the SKU in the last `window_days` — memory slot `price_drops`
(SKU → ISO UTC send times), written back with a `Remember` next to each Send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from scrm_common.contracts.events import CartUpdated, Event, PaymentSucceeded, ProductPriceChanged
from trigger_engine.domain.carts import Cart, carts, open_cart_skus
from trigger_engine.domain.copy import format_locale, money
from trigger_engine.domain.decisions import Decision, FanOut, Remember, Send, Suppress, Withdraw
from trigger_engine.domain.links import resume_link, tracked_link
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.parameters import UnsendableParameters, clean_parameters
from trigger_engine.domain.settings import FlowSettings, ShopUrl, Templates
from trigger_engine.domain.text import clean_text
from trigger_engine.domain.timers import Timer

FLOW = "price_drop"
SLOT = "price_drops"  # memory: SKU → ISO UTC times of the price-drop messages decided for it
WAITING_SLOT = "price_drop_waiting"  # memory: SKU → [key, expiry ISO UTC] of messages that may still wait
RULE = "R-T6.2"


def _http_url(url: str) -> str:
    if not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise ValueError("must be an absolute http:// or https:// URL without spaces")
    return url


class PriceDropSettings(FlowSettings):
    """R-T6.2: a price falling by more than `min_drop_percent` → one marketing message to every person with the
    item in an open cart, at most `max_per_item` per item per person in `window_days`. Template parameters:
    product name, new price, old price (in the cart's currency), the link back to the cart."""

    templates: Templates = Field(default_factory=lambda: {"en_US": "price_drop", "de": "price_drop"},
                                 description="template per language")
    min_drop_percent: float = Field(default=5.0, ge=0, lt=100,
                                    description="a drop must be strictly larger than this, % of the old price "
                                                "(R-T6.2: more than 5 %)")
    max_per_item: int = Field(default=2, ge=1, le=100,
                              description="price-drop messages per item per person within `window_days` (R-T6.2: 2)")
    window_days: int = Field(default=7, ge=1, le=365, description="the window of `max_per_item`, days (R-T6.2: 7)")
    expire_after_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60,
                                      description="a price-drop message later than this after the price change is "
                                                  "not sent (R-T6.2 says immediate; quiet hours may hold it)")
    fallback_url: Annotated[ShopUrl, AfterValidator(_http_url)] = Field(
        default="https://shop.example/cart",
        description="where the message's link leads when the cart has no checkout_url (tracked, not a resume link)")


def key_prefix(tenant: str, event_id: str) -> str:
    """The fan-out's timer key prefix: the person's timer (and message idempotency key) is this + their key."""
    return f"{tenant}|{FLOW}|{event_id}|"


def is_drop(old_price: float, new_price: float, min_drop_percent: float) -> bool:
    """R-T6.2: True when `new_price` < `old_price` × (1 − `min_drop_percent` / 100), exactly (decimal text of the
    prices, no float artefacts): 100 → 95 is no drop at 5 %, 100 → 94.99 is."""
    old, new = Decimal(str(old_price)), Decimal(str(new_price))
    return old > 0 and new < old * (1 - Decimal(str(min_drop_percent)) / 100)


def decide_price_change(event: ProductPriceChanged, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """A drop of more than `min_drop_percent` → one FanOut of the timer `key_prefix(...) + <person>` to every person
    of the tenant with the SKU in an open cart, due at the event's `occurred_at`, expiring `expire_after_minutes`
    after it; payload `sku`, `old_price`, `new_price` (currency units, as the event wrote them) and `event_id`.

    A rise or a smaller drop → nothing. The flow disabled, or `now` already past the expiry → a Suppress about the
    product (`contact_key` `sku:<sku>`) saying why.
    """
    settings = config.flow(FLOW, PriceDropSettings)
    data = event.data
    if not is_drop(data.old_price, data.new_price, settings.min_drop_percent):
        return ()
    product = f"sku:{data.sku}"
    prefix = key_prefix(config.tenant, event.event_id)
    if not settings.enabled:
        return (Suppress(FLOW, "flow disabled", product, prefix),)
    expires = event.occurred_at + timedelta(minutes=settings.expire_after_minutes)
    if now >= expires:
        return (Suppress(FLOW, f"expired: the price changed more than {settings.expire_after_minutes} minutes ago",
                         product, prefix, outcome="expired"),)
    percent = (1 - Decimal(str(data.new_price)) / Decimal(str(data.old_price))) * 100
    reason = f"{RULE}: {data.sku} {data.old_price} → {data.new_price} (−{percent:.1f} %)"
    payload = {"sku": data.sku, "old_price": data.old_price, "new_price": data.new_price, "event_id": event.event_id}
    return (FanOut(FLOW, data.sku, prefix, event.occurred_at, reason, expires, payload),)


def sent_times(profile: ContactProfile, sku: str) -> list[datetime]:
    """The times (aware UTC) of the price-drop messages decided for `sku` as the person's memory has them."""
    found = profile.slot(SLOT).get(sku)
    times: list[datetime] = []
    for text in found if isinstance(found, list) else ():
        try:
            at = datetime.fromisoformat(str(text))
        except ValueError:
            continue
        if at.tzinfo is not None:
            times.append(at)
    return times


def recent(times: Sequence[datetime], now: datetime, window: timedelta) -> list[datetime]:
    """The times less than `window` away from `now`, before or after it, oldest first: a time after `now` counts
    too (a timer may fire out of order, e.g. on an engine whose clock runs behind) — any three sends of one item
    within a window then include one that saw the other two."""
    return sorted(t for t in times if now - window < t < now + window)


def kept(times: Sequence[datetime], now: datetime, window: timedelta) -> list[datetime]:
    """The times worth remembering as of `now`: those after `now - 2 × window` (twice the window, so a timer
    firing up to a window out of order still sees every send it must count), oldest first."""
    return sorted(t for t in times if t > now - 2 * window)


def price_drop_on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                        ) -> tuple[Decision, ...]:
    """One person's price-drop message (R-T6.2), as of `now`.

    Suppressed with the reason: flow disabled, not opted in, stopped marketing, expired, no open cart holds the
    SKU any more, `max_per_item` messages for the SKU already within `window_days` ("R-T6.2: 2 price-drop messages
    for SKU X in the last 7 days"), no phone, no template in the person's language. Else a marketing Send (key
    `timer.key`; parameters: product name, new price, old price in the currency of the most recently updated open
    cart holding it, a resume link to that cart — a tracked link to `fallback_url` when it has no checkout URL)
    and a Remember of the SKU's send times still worth keeping (`kept`) plus `now` (slot `price_drops`). A Send
    that `decide` will refuse (no account, parameters nothing makes sendable) goes without the Remember: only
    messages that leave count towards the limit.
    """
    settings = config.flow(FLOW, PriceDropSettings)
    key, person = timer.key, profile.contact_key
    sku = str(timer.payload.get("sku") or "")
    reason = _unwanted(profile, settings)
    if reason is not None:
        return (Suppress(FLOW, reason, person, key),)
    if timer.expired(now):
        return (Suppress(FLOW, f"expired: the price drop was due at {timer.due_at.isoformat()}", person, key,
                         outcome="expired"),)
    holding = [c for c in carts(profile).values() if c.open and any(line.sku == sku for line in c.items)]
    if not holding:
        return (Suppress(FLOW, f"no open cart holds {sku} any more", person, key),)
    window = timedelta(days=settings.window_days)
    told = recent(sent_times(profile, sku), now, window)
    if len(told) >= settings.max_per_item:
        return (Suppress(FLOW, f"{RULE}: {len(told)} price-drop messages for SKU {sku} in the last "
                               f"{settings.window_days} days", person, key),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", person, key),)
    language = config.language_for(profile.locale, settings.templates)
    if language not in settings.templates:
        return (Suppress(FLOW, f"no price_drop template for language {language}", person, key),)
    cart = max(holding, key=lambda c: c.updated_at)
    send = _message(profile, timer, cart, sku, now, config, settings, language)
    if not _leaves(send, config):
        return (send,)
    memory = sorted([*kept(sent_times(profile, sku), now, window), now])
    remember = Remember(FLOW, person, SLOT, sku, [t.isoformat() for t in memory])
    waits = [*_still_waiting(profile, sku, now), [key, send.expires_at.isoformat() if send.expires_at else None]]
    return send, remember, Remember(FLOW, person, WAITING_SLOT, sku, waits)


def _still_waiting(profile: ContactProfile, sku: str, now: datetime) -> list[list[str | None]]:
    """The person's price-drop messages for `sku` that may still wait in the send gate (key, expiry ISO UTC)."""
    out: list[list[str | None]] = []
    for entry in profile.slot(WAITING_SLOT).get(sku) or ():
        if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str):
            expires = entry[1]
            if expires is None or (isinstance(expires, str) and datetime.fromisoformat(expires) > now):
                out.append([entry[0], expires])
    return out


def withdraw_for_closed_carts(profile: ContactProfile, event: Event, now: datetime, config: EngineConfig
                              ) -> tuple[Decision, ...]:
    """After a purchase or a cart update (`profile` is the person after `event`): a price-drop message for a SKU
    no open cart of the person holds any more, which may still wait in the send gate (quiet hours, pacing), is
    withdrawn — "cancelled: purchased" after a payment, "cancelled: cart emptied" / "cancelled: no open cart holds
    <sku> any more" after a cart update — and forgotten (the 7-day count in `price_drops` stays)."""
    if not isinstance(event, PaymentSucceeded | CartUpdated):
        return ()
    waiting = profile.slot(WAITING_SLOT)
    if not waiting:
        return ()
    settings = config.flow(FLOW, PriceDropSettings)
    still = open_cart_skus(profile)
    person = profile.contact_key
    decisions: list[Decision] = []
    for sku in sorted(waiting):
        if sku in still:
            continue
        if isinstance(event, PaymentSucceeded):
            reason = "cancelled: purchased"
        elif not event.data.items:
            reason = "cancelled: cart emptied"
        else:
            reason = f"cancelled: no open cart holds {sku} any more"
        decisions += [Withdraw(FLOW, key, person, reason, config.account_for(settings))
                      for key, _ in _still_waiting(profile, sku, now) if key is not None]
        decisions.append(Remember(FLOW, person, WAITING_SLOT, sku, None))
    return tuple(decisions)


def _unwanted(profile: ContactProfile, settings: PriceDropSettings) -> str | None:
    if not settings.enabled:
        return "flow disabled"
    if profile.opted_in is False:
        return "contact has not opted in to marketing"
    if profile.stopped_marketing:
        return "customer stopped marketing messages"
    return None


def _message(profile: ContactProfile, timer: Timer, cart: Cart, sku: str, now: datetime, config: EngineConfig,
             settings: PriceDropSettings, language: str) -> Send:
    """The Send for `cart`'s line `sku` (see `price_drop_on_timer`)."""
    line = next(line for line in cart.items if line.sku == sku)
    locale = format_locale(profile.locale, language)
    new_price = _price(timer.payload, "new_price", line.price)
    old_price = _price(timer.payload, "old_price", line.price)
    if cart.checkout_url:
        url, link = resume_link(config, profile, key=timer.key, flow=FLOW, cart_id=cart.cart_id,
                                checkout_url=cart.checkout_url, now=now, content=FLOW)
    else:
        url, link = tracked_link(config, profile, key=timer.key, flow=FLOW, slot="cart", target=settings.fallback_url,
                                 now=now, content=FLOW)
    parameters = (clean_text(line.name), money(new_price, cart.currency, locale),
                  money(old_price, cart.currency, locale), url)
    expires = timer.expires_at or timer.due_at + timedelta(minutes=settings.expire_after_minutes)
    return Send(FLOW, timer.key, "marketing", profile.contact_key, profile.phone or "", settings.templates[language],
                language, parameters, config.account_for(settings), expires_at=expires, links=(link,))


def _price(payload: Mapping[str, object], name: str, default: float) -> float:
    value: Any = payload.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _leaves(send: Send, config: EngineConfig) -> bool:
    """Whether `decide` lets `send` out as a Send (an account carries it, its parameters can be cleaned)."""
    if send.account_id is None:
        return False
    try:
        clean_parameters(send.parameters, config.parameters)
    except UnsendableParameters:
        return False
    return True
