"""R-T6 abandoned cart: three stages timed from the cart's own `occurred_at`, cancelled by a purchase or an
emptied cart, each re-checked against the person's state when its timer fires.

- R-T6.1 stages: 30 ± 5 min (items snapshot + stock hint), 24 ± 2 h (offer), 72 ± 3 h (gift or free shipping).
  The jitter is deterministic per tenant, cart and stage (`stage_due`). Stage n expires when stage n + 1 is due
  (a stage the send gate holds past that is dropped as superseded); the last one `final_expire_after_minutes`
  after its due time (`stage_expires`).
- Keys: the timer key and the message's idempotency key are one, `{tenant}|abandoned_cart|{cart_id}|{n}`
  (`stage_key`), n = 1..3: at most three stages per cart, ever. The stages sent are remembered per cart in the
  memory slot `cart_stages` (cart id → sorted stage numbers), written by a `Remember` beside each Send.
- R-T6.4 carts above the specialist threshold get a "talk to a specialist" tracked link; R-T6.5 every stage
  carries a one-click resume link; R-T6.6 the final stage's template follows the dominant product category.
- R-T6.3 fatigue, quiet hours and caps are the send gate's (cart stages are marketing; `decide.FATIGUE_RULES`).

Pure: every function takes `now` (aware UTC) and the tenant's `EngineConfig`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from pydantic import AfterValidator, Field, model_validator

from scrm_common.contracts.events import CartUpdated, PaymentSucceeded
from scrm_common.contracts.links import ShortLink
from trigger_engine.domain import links
from trigger_engine.domain.carts import Cart, CartLine, cart, carts
from trigger_engine.domain.copy import format_locale, money
from trigger_engine.domain.decisions import Cancel, Decision, Remember, Schedule, Send, Suppress, Withdraw
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings, Language, ShopUrl, TemplateName, Templates, _support_url
from trigger_engine.domain.text import clean_text, shorten
from trigger_engine.domain.timers import Timer

FLOW = "abandoned_cart"
STAGES = (1, 2, 3)
STAGES_SLOT = "cart_stages"  # memory slot: cart id → sorted list of the stage numbers sent
PURCHASED = "cancelled: purchased"
EMPTIED = "cancelled: cart emptied"

# Copy per language: `{name}` fields are replaced as text (never `str.format`); the tenant may change any line.
Lines = Annotated[dict[Language, Annotated[str, Field(min_length=1, max_length=300)]],
                  Field(min_length=1, max_length=50)]


def _lower_keys(table: dict[str, str]) -> dict[str, str]:
    return {key.strip().casefold(): value for key, value in table.items()}


CategoryTemplates = Annotated[dict[Annotated[str, Field(min_length=1, max_length=128)], TemplateName],
                              Field(max_length=100), AfterValidator(_lower_keys)]


class AbandonedCartSettings(FlowSettings):
    """R-T6: the three cart stages, their templates and copy. Times in minutes from the cart event's
    `occurred_at`; money thresholds in the cart currency's units (200 = 200.00 EUR)."""

    templates: Templates = Field(default_factory=lambda: {"en_US": "cart_reminder_1", "de": "cart_reminder_1"},
                                 description="stage 1 template per language (R-T6.1: items + stock hint)")
    stage_2_templates: Templates = Field(
        default_factory=lambda: {"en_US": "cart_reminder_2", "de": "cart_reminder_2"},
        description="stage 2 template per language (R-T6.1: price / offer)")
    stage_3_templates: Templates = Field(
        default_factory=lambda: {"en_US": "cart_reminder_3", "de": "cart_reminder_3"},
        description="stage 3 generic template per language (R-T6.1: gift / free shipping; R-T6.6 fallback)")
    category_finals: CategoryTemplates = Field(
        default_factory=lambda: {"baby": "cart_final_baby", "electronics": "cart_final_electronics",
                                 "apparel": "cart_final_apparel", "beauty": "cart_final_beauty"},
        description="R-T6.6: the final stage's template by the cart's dominant product category (matched "
                    "case-insensitively, whole category or one of its words); other categories: stage_3_templates. "
                    "Same name in every language; not named `…_templates`: its keys are categories, not languages")
    stage_1_minutes: int = Field(default=30, ge=1, le=7 * 24 * 60, description="stage 1 due, minutes (R-T6.1: 30)")
    stage_1_jitter_minutes: int = Field(default=5, ge=0, le=24 * 60, description="± jitter of stage 1 (R-T6.1: 5)")
    stage_2_minutes: int = Field(default=24 * 60, ge=1, le=30 * 24 * 60,
                                 description="stage 2 due, minutes (R-T6.1: 24 h)")
    stage_2_jitter_minutes: int = Field(default=2 * 60, ge=0, le=7 * 24 * 60,
                                        description="± jitter of stage 2 (R-T6.1: 2 h)")
    stage_3_minutes: int = Field(default=72 * 60, ge=1, le=60 * 24 * 60,
                                 description="stage 3 due, minutes (R-T6.1: 72 h)")
    stage_3_jitter_minutes: int = Field(default=3 * 60, ge=0, le=7 * 24 * 60,
                                        description="± jitter of stage 3 (R-T6.1: 3 h)")
    final_expire_after_minutes: int = Field(default=12 * 60, ge=1, le=7 * 24 * 60,
                                            description="the last stage is not sent later than this after its due "
                                                        "time (earlier stages expire when the next one is due)")
    max_items: int = Field(default=3, ge=1, le=10, description="items named, the most valuable first")
    item_name_chars: int = Field(default=24, ge=6, le=200, description="an item's name is cut to this")
    low_stock_threshold: int = Field(default=5, ge=0, le=100_000,
                                     description="stage 1 says how many are left when an item's stock is 1 … this")
    specialist_threshold: float = Field(default=200.0, ge=0,
                                        description="R-T6.4: carts whose total is above this (currency units) get "
                                                    "the talk-to-a-specialist link")
    fallback_url: Annotated[ShopUrl, AfterValidator(_support_url)] = Field(
        default="https://shop.example/cart",
        description="the shop's cart page: where a stage's link leads (tracked) when the cart has no checkout_url")
    specialist_url: Annotated[ShopUrl, AfterValidator(_support_url)] | None = Field(
        default=None, description="where the specialist link leads; null: the tenant's support_url")
    offer_percent: int = Field(default=10, ge=1, le=90, description="stage 2 offer, percent")
    offer_code: str = Field(default="CART10", pattern=r"^[A-Za-z0-9_-]{1,32}$", description="stage 2 offer code")
    more_items_lines: Lines = Field(default_factory=lambda: {"en_US": "+{count} more", "de": "+{count} weitere"},
                                    description="after the items named: how many more there are")
    stock_lines: Lines = Field(
        default_factory=lambda: {"en_US": "Only {stock} left of {name}.", "de": "Nur noch {stock} Stück: {name}."},
        description="stage 1 stock hint ({stock}, {name})")
    saved_lines: Lines = Field(
        default_factory=lambda: {"en_US": "We saved your cart for you.",
                                 "de": "Wir haben deinen Warenkorb für dich gespeichert."},
        description="stage 1 line when no item is low in stock")
    offer_lines: Lines = Field(
        default_factory=lambda: {"en_US": "Complete your order today and save {percent}% with code {code}.",
                                 "de": "Bestelle heute und spare {percent} % mit dem Code {code}."},
        description="stage 2 offer ({percent}, {code})")
    gift_lines: Lines = Field(
        default_factory=lambda: {"en_US": "Order now and get free shipping plus a little gift.",
                                 "de": "Jetzt bestellen: kostenloser Versand und ein kleines Geschenk."},
        description="stage 3 gift / free-shipping line")
    specialist_lines: Lines = Field(
        default_factory=lambda: {"en_US": "Questions? Talk to a specialist: {link}",
                                 "de": "Fragen? Sprich mit unserer Fachberatung: {link}"},
        description="R-T6.4 help line for carts above the threshold ({link})")
    help_lines: Lines = Field(
        default_factory=lambda: {"en_US": "Reply here if you have questions.",
                                 "de": "Antworte einfach hier, wenn du Fragen hast."},
        description="help line for the other carts")

    @model_validator(mode="after")
    def _stages_in_order(self) -> AbandonedCartSettings:
        windows = [(n, self.offset(n) - self.jitter(n), self.offset(n) + self.jitter(n)) for n in STAGES]
        for (n, _, latest), (m, earliest, _) in zip(windows, windows[1:], strict=False):
            if latest >= earliest:
                raise ValueError(f"stage {n} may be due at {latest} (offset + jitter) and stage {m} at {earliest}: "
                                 "every stage must be due before the next one can be")
            if earliest - self.jitter(m) <= timedelta(0):
                raise ValueError(f"stage {m}'s jitter reaches before the cart event")
        if self.offset(1) - self.jitter(1) <= timedelta(0):
            raise ValueError("stage 1's jitter reaches before the cart event")
        return self

    def offset(self, stage: int) -> timedelta:
        """Stage `stage`'s nominal delay after the cart event (R-T6.1)."""
        minutes = {1: self.stage_1_minutes, 2: self.stage_2_minutes, 3: self.stage_3_minutes}[stage]
        return timedelta(minutes=minutes)

    def jitter(self, stage: int) -> timedelta:
        """Stage `stage`'s ± jitter (R-T6.1)."""
        minutes = {1: self.stage_1_jitter_minutes, 2: self.stage_2_jitter_minutes,
                   3: self.stage_3_jitter_minutes}[stage]
        return timedelta(minutes=minutes)

    def stage_templates(self, stage: int) -> Mapping[str, str]:
        """The (generic) template per language of stage `stage`."""
        return {1: self.templates, 2: self.stage_2_templates, 3: self.stage_3_templates}[stage]


def stage_key(tenant: str, cart_id: str, stage: int) -> str:
    """The timer key and message idempotency key of stage `stage` (1..3) of cart `cart_id`."""
    return f"{cart_prefix(tenant, cart_id)}{stage}"


def cart_prefix(tenant: str, cart_id: str) -> str:
    """The key prefix of every stage of cart `cart_id` (`Cancel(prefix=True)`). The cart id is percent-encoded
    (`|` → `%7C`): cancelling cart `a` never touches cart `a|b`'s stages."""
    return f"{tenant}|{FLOW}|{quote(cart_id, safe='')}|"


def stage_jitter_seconds(tenant: str, cart_id: str, stage: int, jitter: timedelta) -> int:
    """The deterministic jitter of a stage, whole seconds in [-jitter, +jitter]: the first 8 bytes of
    sha256(`tenant|cart_id|stage`) (big-endian) modulo 2·jitter + 1, minus jitter (R-T6.1)."""
    bound = int(jitter.total_seconds())
    digest = hashlib.sha256(f"{tenant}|{cart_id}|{stage}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2 * bound + 1) - bound


def stage_due(tenant: str, cart_id: str, stage: int, occurred_at: datetime, settings: AbandonedCartSettings
              ) -> datetime:
    """When stage `stage` of a cart last updated at `occurred_at` (aware) is due: `occurred_at` + the stage's
    offset + its deterministic jitter (`stage_jitter_seconds`; R-T6.1: 30 ± 5 min, 24 ± 2 h, 72 ± 3 h)."""
    jitter = stage_jitter_seconds(tenant, cart_id, stage, settings.jitter(stage))
    return occurred_at + settings.offset(stage) + timedelta(seconds=jitter)


def stage_expires(tenant: str, cart_id: str, stage: int, occurred_at: datetime, settings: AbandonedCartSettings
                  ) -> datetime:
    """When stage `stage` stops being worth sending: at the earliest time the next stage may be due (its offset
    minus its whole jitter: 22 h for stage 1, 69 h for stage 2 — superseded; whatever the next stage's own jitter,
    a stage is never sent next to it, and a cart abandoned 25 h ago has its stage 1 expired), the last stage
    `final_expire_after_minutes` after its own due time."""
    if stage < STAGES[-1]:
        return occurred_at + settings.offset(stage + 1) - settings.jitter(stage + 1)
    return stage_due(tenant, cart_id, stage, occurred_at, settings) + timedelta(
        minutes=settings.final_expire_after_minutes)


def stages_sent(profile: ContactProfile, cart_id: str) -> frozenset[int]:
    """The stage numbers already sent (decided) for cart `cart_id` (memory slot `cart_stages`)."""
    value = profile.slot(STAGES_SLOT).get(cart_id) or ()
    return frozenset(int(n) for n in value if isinstance(n, int) and not isinstance(n, bool))


def decide_cart(profile: ContactProfile, event: CartUpdated, now: datetime,  # noqa: ARG001 (the flows' signature)
                config: EngineConfig) -> tuple[Decision, ...]:
    """Schedule (or re-arm) the cart's stages; an emptied cart cancels them (R-T6.1).

    `profile` is the person after `event` (`carts.evolve_carts`). An event the cart memory did not take (older
    than what is remembered, or a cart purchased since) decides nothing. Items → a `Schedule` of every stage
    after the last one sent, due `stage_due(...)` from the event's `occurred_at`, expiring `stage_expires(...)`,
    payload {cart_id, stage, event_id} (a stage already past its expiry is recorded expired by the timer loop).
    No items → `Cancel` of the cart's key prefix and a `Withdraw` of each stage sent (it may still wait for the
    quiet hours to end), reason `cancelled: cart emptied`. Flow disabled → a Suppress `flow disabled` (an
    emptied cart still cancels)."""
    settings = config.flow(FLOW, AbandonedCartSettings)
    cart_id = event.data.cart_id
    remembered = cart(profile, cart_id)
    if remembered is None or remembered.event_id != event.event_id:
        return ()
    if remembered.status == "emptied":
        return _cancel(profile, cart_id, EMPTIED, config, settings)
    if remembered.status != "open":
        return ()
    if not settings.enabled:
        return (Suppress(FLOW, "flow disabled", profile.contact_key, stage_key(config.tenant, cart_id, 1)),)
    sent = stages_sent(profile, cart_id)
    after = max(sent, default=0)
    return tuple(
        Schedule(FLOW, stage_key(config.tenant, cart_id, n), profile.contact_key,
                 stage_due(config.tenant, cart_id, n, event.occurred_at, settings),
                 stage_expires(config.tenant, cart_id, n, event.occurred_at, settings),
                 {"cart_id": cart_id, "stage": n, "event_id": event.event_id})
        for n in STAGES if n > after)


def cancel_carts(profile: ContactProfile, event: PaymentSucceeded, now: datetime,  # noqa: ARG001 (signature)
                 config: EngineConfig) -> tuple[Decision, ...]:
    """A purchase cancels the stages still pending (R-T6.1), reason `cancelled: purchased`.

    `profile` is the person after `event`: the cart the payment names, or — without a `cart_id` — every cart
    this payment closed (status purchased, `closed_at` == the payment's `occurred_at`) gets a `Cancel` of its
    key prefix and a `Withdraw` of each stage already sent (it may still be waiting in the send gate)."""
    settings = config.flow(FLOW, AbandonedCartSettings)
    if event.data.cart_id is not None:
        closed = [event.data.cart_id]
    else:
        closed = sorted(cid for cid, c in carts(profile).items()
                        if c.status == "purchased" and c.closed_at == event.occurred_at)
    return tuple(d for cid in closed for d in _cancel(profile, cid, PURCHASED, config, settings))


def cart_on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                  ) -> tuple[Decision, ...]:
    """A stage's timer fired: re-check the person as of `now` in the firing transaction (a payment decided
    milliseconds earlier is seen here) and send the stage, or say why not.

    Suppress when: the flow is disabled; the cart is unknown or purchased (`cancelled: purchased`) or emptied
    (`cancelled: cart emptied`); this or a later stage was sent already; the timer has expired (outcome
    expired); the person has not opted in, stopped marketing or has no phone; the cart has no checkout URL; the
    flow has no template in the person's language. Else: the `Send` (category marketing, expiring at the
    stage's expiry; parameters: items, total, stage line, resume link, help line — `stage_parameters`), a
    `Remember` of the stage in `cart_stages` and, from stage 2 on, a `Withdraw` of the previous stage's message
    when it was sent (`superseded by stage n`)."""
    settings = config.flow(FLOW, AbandonedCartSettings)
    cart_id, stage = _timer_stage(timer)
    who = profile.contact_key

    def suppress(reason: str) -> tuple[Decision, ...]:
        return (Suppress(FLOW, reason, who, timer.key),)

    if not settings.enabled:
        return suppress("flow disabled")
    remembered = cart(profile, cart_id) if cart_id else None
    if remembered is None or remembered.status == "purchased":
        return suppress(PURCHASED)
    if remembered.status == "emptied":
        return suppress(EMPTIED)
    if stage not in STAGES:
        return suppress(f"no cart stage {stage}")
    sent = stages_sent(profile, cart_id)
    if stage in sent:
        return suppress(f"stage {stage} already sent")
    if sent and max(sent) > stage:
        return suppress(f"superseded: stage {max(sent)} already sent")
    if timer.expired(now):
        return (Suppress(FLOW, f"expired: stage {stage} was due at {timer.due_at.isoformat()}", who, timer.key,
                         outcome="expired"),)
    if profile.opted_in is False:
        return suppress("contact has not opted in to marketing")
    if profile.stopped_marketing:
        return suppress("customer stopped marketing messages")
    if not profile.phone:
        return suppress("no phone number known for contact")
    generic = settings.stage_templates(stage)
    language = config.language_for(profile.locale, generic)
    if language not in generic:
        return suppress(f"no cart reminder template for language {language}")
    template = final_template(remembered, settings, language) if stage == STAGES[-1] else generic[language]
    parameters, minted = stage_parameters(profile, remembered, stage, now, config, settings, language)
    expires = timer.expires_at or stage_expires(config.tenant, cart_id, stage, remembered.updated_at, settings)
    account = config.account_for(settings)
    decisions: list[Decision] = [
        Send(FLOW, timer.key, "marketing", who, profile.phone, template, language, parameters, account,
             expires_at=expires, links=minted),
        Remember(FLOW, who, STAGES_SLOT, cart_id, sorted(sent | {stage})),
    ]
    if stage - 1 in sent:
        decisions.append(Withdraw(FLOW, stage_key(config.tenant, cart_id, stage - 1), who,
                                  f"superseded by stage {stage}", account))
    return tuple(decisions)


def stage_parameters(profile: ContactProfile, remembered: Cart, stage: int, now: datetime, config: EngineConfig,
                     settings: AbandonedCartSettings, language: str
                     ) -> tuple[tuple[str, ...], tuple[ShortLink, ...]]:
    """The five body parameters of stage `stage` and the short links they name:
    1 items (`items_line`), 2 the cart total (Babel money in the cart's currency and the person's locale),
    3 stage 1 the stock hint (an item with 1 … `low_stock_threshold` left, the scarcest) or the saved line,
    stage 2 the offer line, stage 3 the gift line, 4 the resume link (R-T6.5, content `stage_n`), 5 the
    specialist line with a tracked link to `specialist_url` (support URL) when the total is above
    `specialist_threshold` (R-T6.4), else the help line. A cart without a checkout URL gets a tracked link to
    `fallback_url` (the shop's cart page) in place of the resume link."""
    locale = format_locale(profile.locale, language)
    key = stage_key(config.tenant, remembered.cart_id, stage)
    content = f"stage_{stage}"
    total = money(remembered.total, remembered.currency, locale)
    if stage == 1:
        third = stock_line(remembered, settings, language, config.default_language)
    elif stage == 2:
        third = _fill(_text(settings.offer_lines, language, config.default_language),
                      percent=str(settings.offer_percent), code=settings.offer_code)
    else:
        third = _text(settings.gift_lines, language, config.default_language)
    if remembered.checkout_url:
        resume_url, resume = links.resume_link(config, profile, key=key, flow=FLOW, cart_id=remembered.cart_id,
                                               checkout_url=remembered.checkout_url, now=now, content=content)
    else:
        resume_url, resume = links.tracked_link(config, profile, key=key, flow=FLOW, slot="cart",
                                                target=settings.fallback_url, now=now, content=content)
    minted: list[ShortLink] = [resume]
    if remembered.total > settings.specialist_threshold:
        target = settings.specialist_url or config.settings.support_url
        url, specialist = links.tracked_link(config, profile, key=key, flow=FLOW, slot="specialist", target=target,
                                             now=now, content=content)
        minted.append(specialist)
        help_line = _fill(_text(settings.specialist_lines, language, config.default_language), link=url)
    else:
        help_line = _text(settings.help_lines, language, config.default_language)
    items = items_line(remembered.items, settings, locale, remembered.currency, language, config.default_language)
    return (items, total, third, resume_url, help_line), tuple(minted)


def items_line(lines: tuple[CartLine, ...], settings: AbandonedCartSettings, locale: str, currency: str,
               language: str, default_language: str) -> str:
    """Up to `max_items` items, the most valuable (price × quantity) first: `Name €19.90` (`2× Name €19.90`
    for a quantity above one; the unit price), comma-separated, then `+N more` for the rest."""
    ordered = sorted(lines, key=lambda line: -line.price * line.quantity)
    shown = ordered[:settings.max_items]
    parts = []
    for line in shown:
        name = shorten(clean_text(line.name), settings.item_name_chars) or line.sku
        count = f"{line.quantity}× " if line.quantity > 1 else ""
        parts.append(f"{count}{name} – {money(line.price, currency, locale)}")
    text = ", ".join(parts)
    rest = len(ordered) - len(shown)
    if rest > 0:
        text += " " + _fill(_text(settings.more_items_lines, language, default_language), count=str(rest))
    return text


def stock_line(remembered: Cart, settings: AbandonedCartSettings, language: str, default_language: str) -> str:
    """Stage 1's third parameter: `Only 2 left of Name.` for the scarcest item with 1 … `low_stock_threshold`
    in stock (known stock only), else the saved-cart line."""
    low = [line for line in remembered.items
           if line.stock is not None and 1 <= line.stock <= settings.low_stock_threshold]
    if not low:
        return _text(settings.saved_lines, language, default_language)
    scarce = min(low, key=lambda line: (line.stock or 0, line.name))
    name = shorten(clean_text(scarce.name), settings.item_name_chars) or scarce.sku
    return _fill(_text(settings.stock_lines, language, default_language), stock=str(scarce.stock), name=name)


def dominant_category(remembered: Cart) -> str | None:
    """The cart's category with the largest price × quantity sum (casefolded; ties: alphabetically first);
    None when no item names one."""
    sums: dict[str, float] = {}
    for line in remembered.items:
        if line.category and line.category.strip():
            category = line.category.strip().casefold()
            sums[category] = sums.get(category, 0.0) + line.price * line.quantity
    if not sums:
        return None
    return min(sums, key=lambda category: (-sums[category], category))


def final_template(remembered: Cart, settings: AbandonedCartSettings, language: str) -> str:
    """R-T6.6: the final stage's template: `category_finals` of the dominant category — the whole category,
    else the longest table key that is one of its words (`Baby Care` → baby) — else the generic stage-3
    template of `language`."""
    category = dominant_category(remembered)
    table = settings.category_finals
    if category is not None:
        if category in table:
            return table[category]
        words = set(category.replace("-", " ").replace("&", " ").replace("/", " ").split())
        for key in sorted(table, key=lambda k: (-len(k), k)):
            if key in words:
                return table[key]
    return settings.stage_3_templates[language]


def _cancel(profile: ContactProfile, cart_id: str, reason: str, config: EngineConfig,
            settings: AbandonedCartSettings) -> tuple[Decision, ...]:
    """Cancel every pending stage of `cart_id` and withdraw each one sent (oldest first)."""
    who = profile.contact_key
    account = config.account_for(settings)
    withdrawals = tuple(Withdraw(FLOW, stage_key(config.tenant, cart_id, n), who, reason, account)
                        for n in sorted(stages_sent(profile, cart_id)))
    return (Cancel(FLOW, cart_prefix(config.tenant, cart_id), who, reason, prefix=True), *withdrawals)


def _timer_stage(timer: Timer) -> tuple[str, int]:
    """The cart id and stage a timer is for: from its payload, else from its key's last two fields."""
    cart_id = timer.payload.get("cart_id")
    stage = timer.payload.get("stage")
    fields = timer.key.split("|")
    if not isinstance(cart_id, str):
        cart_id = "|".join(fields[2:-1]) if len(fields) >= 4 else ""
    if not isinstance(stage, int) or isinstance(stage, bool):
        stage = int(fields[-1]) if fields[-1].isdigit() else 0
    return cart_id, stage


def _text(lines: Mapping[str, str], language: str, default_language: str) -> str:
    """The line in `language`, else its base language's, else the tenant's default language's, else the first."""
    if language in lines:
        return lines[language]
    base = language.split("_", 1)[0]
    for candidate in sorted(lines):
        if candidate.split("_", 1)[0] == base:
            return lines[candidate]
    return lines.get(default_language) or next(iter(lines.values()))


def _fill(text: str, **values: str) -> str:
    """`text` with each `{name}` replaced by its value, as plain text (no `str.format`)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text
