"""The engine's heart: `evolve(profile, event)` and `decide(profile, event, now, config)`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, time
from functools import lru_cache
from types import MappingProxyType

from scrm_common.contracts.commands import Fatigue, FrequencyCap, GatePolicy, QuietHours
from scrm_common.contracts.events import (
    CartUpdated,
    ContactCreated,
    ContactNumberChanged,
    ContactUpdated,
    Event,
    MarketingPreferenceChanged,
    OrderReturned,
    PaymentSucceeded,
    Preferences,
    ProductPriceChanged,
    ShipmentUpdated,
)
from scrm_common.identity import match_key
from trigger_engine.domain import abandoned_cart, anti_fraud, price_drop, shipment
from trigger_engine.domain.carts import evolve_carts
from trigger_engine.domain.decisions import Decision, Remember, Send, Suppress, Withdraw
from trigger_engine.domain.identity import current_numbers, reachable_phone
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.order_confirmation import decide_order_confirmation
from trigger_engine.domain.parameters import UnsendableParameters, clean_parameters
from trigger_engine.domain.settings import FatigueRule, GateSettings
from trigger_engine.domain.timers import Timer
from trigger_engine.domain.welcome import FLOW as WELCOME
from trigger_engine.domain.welcome import decide_welcome, welcome_on_timer, withdraw_welcome
from trigger_engine.domain.welcome import idempotency_key as welcome_key
from trigger_engine.domain.welcome import person_of_key as welcome_person


def evolve(profile: ContactProfile, event: Event) -> ContactProfile:
    """The person's profile after an event (CONTRACT §2: contact fields on any event update it).

    The shop's `name` is never replaced by the WhatsApp `profile_name`, which has its own field. A
    phone that is only WhatsApp's other form of the known one (`+521…` for `+52…`) keeps the shop's.
    Only the shop (an event naming an external id) moves a person to another number: an event
    without one (a webhook, late from a number the person changed away from) only fills gaps.
    `contact.number_changed` moves the person to the new number (the old stays an alias);
    `contact.marketing_preference_changed` records the customer's choice, the latest one winning.
    `contact.created` dates the person (`created_at`: the earliest such event's `occurred_at`);
    `payment.succeeded` records their first purchase (the earliest by `occurred_at`; R-T1: it withdraws a
    waiting welcome). `contact.created`/`contact.updated` replace the person's stated `preferences` with the
    event's when the event names `preferences` at all (an event without them keeps what was stated; an empty
    object clears it) — the send gate honours them (R-G4, R-S5). Events without a contact (account and
    template events) change nothing.
    """
    contact = event.contact
    if contact is None:
        return profile
    for remember in REMEMBERED:  # what flows keep about the person (carts, shipments, orders)
        profile = remember(profile, event)
    if isinstance(event, ContactCreated) and (profile.created_at is None or event.occurred_at < profile.created_at):
        profile = replace(profile, created_at=event.occurred_at)
    elif isinstance(event, PaymentSucceeded) and (
            profile.first_purchase_at is None or event.occurred_at < profile.first_purchase_at):
        profile = replace(profile, first_purchase_at=event.occurred_at, first_purchase_event=event.event_id)
    if isinstance(event, ContactNumberChanged):
        return replace(profile, wa_id=event.data.new_wa_id, phone=reachable_phone(event.data.new_wa_id))
    if isinstance(event, MarketingPreferenceChanged):
        return _with_marketing(profile, event)
    phone, wa_id = contact.phone, contact.wa_id
    current = current_numbers(profile.phone, profile.wa_id)
    if contact.external_id is None and current and any(
            match_key(number) not in current for number in (phone, wa_id) if number):
        phone = wa_id = None  # a late webhook from a number the person changed away from
    if phone and profile.phone and phone != profile.phone and match_key(phone) == match_key(profile.phone):
        phone = None
    if phone is None and profile.phone is None and wa_id:
        phone = reachable_phone(wa_id)
    opted_in = None
    if isinstance(event, ContactCreated | ContactUpdated):
        opted_in = event.data.opted_in
        if "preferences" in event.data.model_fields_set:
            profile = replace(profile, preferences=stated_preferences(event.data.preferences))
    return profile.merged(phone=phone, name=contact.name, locale=contact.locale, timezone=contact.timezone,
                          opted_in=opted_in, wa_id=wa_id, profile_name=contact.profile_name)


# What each flow remembers about a person as events arrive (`ContactProfile.state` slots), in this order.
REMEMBERED: tuple[Callable[[ContactProfile, Event], ContactProfile], ...] = (
    evolve_carts,  # R-T6 (slot `carts`)
    shipment.evolve_shipments,  # R-T3 (slot `shipments`)
    anti_fraud.evolve_orders,  # R-T2.5 (slot `orders`)
)


def stated_preferences(preferences: Preferences) -> Mapping[str, object]:
    """The preferences an event stated, as the profile keeps them: the keys the event named (known and other
    ones) with their values (JSON scalars), read-only."""
    return MappingProxyType(preferences.model_dump(mode="json", exclude_unset=True))


def _with_marketing(profile: ContactProfile, event: MarketingPreferenceChanged) -> ContactProfile:
    if event.data.category != "marketing_messages":
        return profile
    if profile.marketing_changed_at is not None and event.occurred_at < profile.marketing_changed_at:
        return profile  # an older choice arriving late does not undo a newer one
    return replace(profile, marketing=event.data.value, marketing_changed_at=event.occurred_at)


def absorb(person: ContactProfile, other: ContactProfile) -> ContactProfile:
    """`person` after learning that `other` is the same person: `person`'s known facts win, `other`'s
    fill the gaps; the later marketing choice holds; the person was created when the first of them was, and
    their first purchase is the earlier of the two. Stated preferences: `person`'s keys keep their values,
    `other`'s fill the keys `person` has no value for (R-G4)."""
    gaps = {name: getattr(other, name) for name in _FACTS if getattr(person, name) is None}
    merged = replace(person, **gaps, preferences=_merged_preferences(person.preferences, other.preferences))
    if other.marketing_changed_at is not None and (
            merged.marketing_changed_at is None or other.marketing_changed_at > merged.marketing_changed_at):
        merged = replace(merged, marketing=other.marketing, marketing_changed_at=other.marketing_changed_at)
    if other.created_at is not None and (merged.created_at is None or other.created_at < merged.created_at):
        merged = replace(merged, created_at=other.created_at)
    if other.first_purchase_at is not None and (
            merged.first_purchase_at is None or other.first_purchase_at < merged.first_purchase_at):
        merged = replace(merged, first_purchase_at=other.first_purchase_at,
                         first_purchase_event=other.first_purchase_event)
    for slot, entries in other.state.items():  # the flows' memory: entity by entity, `person`'s winning
        merged = merged.with_slot(slot, MappingProxyType({**entries, **merged.slot(slot)}))
    return merged


_FACTS = ("phone", "name", "locale", "timezone", "opted_in", "wa_id", "profile_name")


def _merged_preferences(own: Mapping[str, object] | None,
                        other: Mapping[str, object] | None) -> Mapping[str, object] | None:
    """`own` preferences with `other`'s filling the keys `own` has no (non-null) value for; None when neither
    person stated any."""
    if other is None:
        return own
    if own is None:
        return other
    gaps = {key: value for key, value in other.items() if own.get(key) is None}
    return MappingProxyType({**own, **gaps}) if gaps else own


def person_keys(tenant: str, person: str) -> tuple[str, ...]:
    """The idempotency keys of the once-per-person flows (R-T1 welcome) for `person`, in a fixed order.

    When a person is absorbed into another, what was decided under its keys counts for the other's
    keys at the same position: one welcome per person, whichever identity was welcomed first.
    """
    return (welcome_key(tenant, person),)


# The inverse of each once-per-person key, in `person_keys`' order: key → its person, or None.
_PERSON_KEY_OWNERS: tuple[Callable[[str, str], str | None], ...] = (welcome_person,)


def person_key_owner(tenant: str, key: str) -> tuple[int, str] | None:
    """Whose once-per-person key `key` is: its position in `person_keys` and the person; None for any other key."""
    for position, owner in enumerate(_PERSON_KEY_OWNERS):
        person = owner(tenant, key)
        if person is not None:
            return position, person
    return None


def merged_withdrawals(tenant: str, withdraw: Withdraw, reserved: Iterable[str]) -> tuple[Withdraw, ...]:
    """The withdrawals that go with `withdraw` for the persons merged into its person (R-T1: a first purchase
    withdraws every welcome of the buyer that may still be waiting, also one decided for an identity that turned
    out to be the buyer).

    `reserved`: the idempotency keys the engine reserved sends under for `withdraw`'s person and flow (an
    absorbed person's sends are the person's since the merge). When `withdraw` withdraws a once-per-person key
    of its own person (`person_keys`), returns one Withdraw (same flow, person, reason and account) per
    reserved key that is the once-per-person key at the same position of another person, in `reserved`'s
    order; else nothing.
    """
    owner = person_key_owner(tenant, withdraw.idempotency_key)
    if owner is None or owner[1] != withdraw.contact_key:
        return ()
    found: list[Withdraw] = []
    for key in dict.fromkeys(reserved):
        other = person_key_owner(tenant, key)
        if key != withdraw.idempotency_key and other is not None and other[0] == owner[0]:
            found.append(replace(withdraw, idempotency_key=key))
    return tuple(found)


def person_key_moves(tenant: str, absorbed: str, person: str) -> dict[str, str]:
    """absorbed's once-per-person keys → `person`'s (see `person_keys`)."""
    return dict(zip(person_keys(tenant, absorbed), person_keys(tenant, person), strict=True))


def decide(profile: ContactProfile, event: Event, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """What to do about one event, given the person's profile after it.

    `payment.succeeded`: the order confirmation (R-T2), after withdrawing the person's welcome when this is
    their first purchase and the welcome may still be waiting (R-T1: no "10 % off your first order" after
    the order confirmation). `contact.created`: the welcome (R-T1), at once or as a timer.
    Every Send is made sendable in one place (`_sendable`), whichever flow decided it.
    """
    decisions: tuple[Decision, ...] = ()
    if isinstance(event, PaymentSucceeded):
        decisions = (withdraw_welcome(profile, event, now, config)  # R-T1
                     + abandoned_cart.cancel_carts(profile, event, now, config)  # R-T6.1
                     + price_drop.withdraw_for_closed_carts(profile, event, now, config)  # R-T6.2
                     + decide_order_confirmation(profile, event, now, config)  # R-T2
                     + anti_fraud.decide_anti_fraud(profile, event, now, config))  # R-T2.5
    elif isinstance(event, ContactCreated):
        decisions = decide_welcome(profile, event, now, config)  # R-T1
    elif isinstance(event, CartUpdated):
        decisions = (abandoned_cart.decide_cart(profile, event, now, config)  # R-T6
                     + price_drop.withdraw_for_closed_carts(profile, event, now, config))  # R-T6.2
    elif isinstance(event, ShipmentUpdated):
        decisions = shipment.decide_shipment(profile, event, now, config)  # R-T3
    elif isinstance(event, OrderReturned):
        decisions = anti_fraud.cancel_anti_fraud(profile, event, now, config)  # R-T2.5
    return _made_sendable(decisions, profile, config)


def _made_sendable(decisions: tuple[Decision, ...], profile: ContactProfile, config: EngineConfig
                   ) -> tuple[Decision, ...]:
    """Each decision through `_sendable`; a flow's `Remember` goes only with a Send that stayed a Send (what a
    flow remembers of a message it sent is not remembered when nothing could be sent)."""
    made = tuple(_sendable(d, profile, config) for d in decisions)
    refused = {d.flow for d, m in zip(decisions, made, strict=True) if isinstance(d, Send) and not isinstance(m, Send)}
    if not refused:
        return made
    return tuple(m for m in made if not (isinstance(m, Remember) and m.flow in refused))


def decide_without_contact(event: Event, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """What to do about an event that names no person: a price change reaches the persons with the product in
    an open cart (R-T6.2, a `FanOut`); anything else decides nothing."""
    if isinstance(event, ProductPriceChanged):
        return price_drop.decide_price_change(event, now, config)
    return ()


def _sendable(decision: Decision, profile: ContactProfile, config: EngineConfig) -> Decision:
    """A flow's decision as it leaves the engine: a Send gets the send gate's policy from the tenant's and the
    flow's settings (`gate_policy`), the contact's time zone as the engine knows it (None: the sender derives
    one from the number) and their stated preferences (None: never stated; R-G4, R-S5); its parameters are
    cleaned to what the Cloud API accepts (`parameters`). A Send no account can carry, or with a parameter
    nothing can make sendable, becomes a Suppress saying why. Policy, zone and preferences go on marketing
    sends only: the gate holds no other message by them. Other decisions pass unchanged."""
    if not isinstance(decision, Send):
        return decision
    if decision.account_id is None:
        # A message no account can carry is not decided as a send: say why instead.
        return Suppress(decision.flow, _no_account(decision.flow, config), decision.contact_key,
                        decision.idempotency_key)
    try:
        parameters = clean_parameters(decision.parameters, config.parameters)
    except UnsendableParameters as exc:
        return Suppress(decision.flow, str(exc), decision.contact_key, decision.idempotency_key)
    if decision.category != "marketing":
        # Quiet hours, caps, fatigue and preferences govern marketing only: a utility command stays lean.
        return replace(decision, parameters=parameters)
    return replace(decision, parameters=parameters, policy=gate_policy(decision.flow, config),
                   timezone=profile.timezone, preferences=profile.preferences)


# flow → the fatigue rule its messages are subject to (R-T4.5 unread reminders, R-T6.3 cart reminders); the
# threshold and pause are the tenant's (`TenantSettings.gate.fatigue`). A reminder flow adds its row here.
FATIGUE_RULES: dict[str, FatigueRule] = {
    abandoned_cart.FLOW: "R-T6.3",  # cart reminders: 0.6 × reminders in 7 days − 0.4 × read rate > 1.8
}


def gate_policy(flow: str, config: EngineConfig) -> GatePolicy:
    """The send gate's policy for a message of `flow` (SendMessage.policy): the tenant's quiet hours (R-S4; None
    when the flow's settings say `quiet_hours_exempt`, as R-T5 birthday will), frequency cap (R-S5), and the
    flow's fatigue rule with the tenant's threshold and pause (R-T4.5 / R-T6.3; None for a flow without one,
    see `FATIGUE_RULES`). The sender ignores quiet hours, cap and fatigue for utility messages."""
    settings = config.flows.get(flow)
    exempt = settings is not None and settings.quiet_hours_exempt
    return _policy(config.settings.gate, exempt, FATIGUE_RULES.get(flow))


@lru_cache(maxsize=1024)
def _policy(gate: GateSettings, quiet_hours_exempt: bool, fatigue: FatigueRule | None) -> GatePolicy:
    """GatePolicy from settings, built once per distinct settings (models are frozen and hashable)."""
    quiet = QuietHours(start=time.fromisoformat(gate.quiet_hours.start), end=time.fromisoformat(gate.quiet_hours.end))
    cap = FrequencyCap(limit=gate.frequency_cap.limit, window_days=gate.frequency_cap.window_days)
    pause = None if fatigue is None else Fatigue(rule=fatigue, threshold=gate.fatigue.threshold(fatigue),
                                                 pause_days=gate.fatigue.pause_days)
    return GatePolicy(quiet_hours=quiet, quiet_hours_exempt=quiet_hours_exempt, frequency_cap=cap, fatigue=pause)


def _no_account(flow: str, config: EngineConfig) -> str:
    settings = config.flows.get(flow)
    if settings is not None and settings.account_id is not None:
        return f"WhatsApp account {settings.account_id} chosen for flow {flow} is not registered for this tenant"
    return "no WhatsApp account configured for this tenant"


# Which flow an event type triggers: used to record duplicates against the flow they would have fed.
FLOW_OF_EVENT = {"payment.succeeded": "order_confirmation", "contact.created": "welcome"}

# What the engine reads: events that trigger a flow or carry contact fields. Delivery receipts
# (message.status) are the bulk of the log and change no decision, so they are skipped unparsed (the failed ones
# are told in the person's story by a consumer group of their own: trigger_engine.outcomes);
# template events name no contact. Account events (`account.registered`/`removed`, from the sender) name none
# either: they tell which WhatsApp accounts a tenant owns (ACCOUNT_EVENTS, the handler's projection).
ACCOUNT_EVENTS: frozenset[str] = frozenset({"account.registered", "account.removed"})
EVENTS_READ: frozenset[str] = frozenset({
    "contact.created", "contact.updated", "cart.updated", "payment.succeeded", "payment.failed",
    "shipment.updated", "order.returned", "product.price_changed", "feedback.submitted", "message.inbound",
    "link.clicked", "contact.marketing_preference_changed", "contact.number_changed",
}) | ACCOUNT_EVENTS


def on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """What to do when `timer` fires for the person `profile` (their state as of now, read in the firing
    transaction): the flow that scheduled it decides. An expired timer never reaches this (the timer loop
    records it as expired); a timer of a flow that handles none is suppressed with the reason."""
    handler = TIMER_FLOWS.get(timer.flow)
    if handler is None:
        return (Suppress(timer.flow, f"no flow handles timers of {timer.flow}", profile.contact_key, timer.key),)
    return _made_sendable(handler(profile, timer, now, config), profile, config)


# flow → its `on_timer(profile, timer, now, config)`: the flows that schedule timers register here.
TIMER_FLOWS: dict[str, Callable[[ContactProfile, Timer, datetime, EngineConfig], tuple[Decision, ...]]] = {
    WELCOME: welcome_on_timer,  # R-T1 with a delay
    abandoned_cart.FLOW: abandoned_cart.cart_on_timer,  # R-T6 stages
    price_drop.FLOW: price_drop.price_drop_on_timer,  # R-T6.2, one person of a fan-out
    anti_fraud.FLOW: anti_fraud.anti_fraud_on_timer,  # R-T2.5, 24 h after the confirmation
}
