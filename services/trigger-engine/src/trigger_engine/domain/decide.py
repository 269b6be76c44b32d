"""The engine's heart: `evolve(profile, event)` and `decide(profile, event, now, config)`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from scrm_common.contracts.events import (
    ContactCreated,
    ContactNumberChanged,
    ContactUpdated,
    Event,
    MarketingPreferenceChanged,
    PaymentSucceeded,
)
from scrm_common.identity import match_key
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.identity import current_numbers, reachable_phone
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.order_confirmation import decide_order_confirmation
from trigger_engine.domain.parameters import UnsendableParameters, clean_parameters
from trigger_engine.domain.timers import Timer
from trigger_engine.domain.welcome import decide_welcome
from trigger_engine.domain.welcome import idempotency_key as welcome_key


def evolve(profile: ContactProfile, event: Event) -> ContactProfile:
    """The person's profile after an event (CONTRACT §2: contact fields on any event update it).

    The shop's `name` is never replaced by the WhatsApp `profile_name`, which has its own field. A
    phone that is only WhatsApp's other form of the known one (`+521…` for `+52…`) keeps the shop's.
    Only the shop (an event naming an external id) moves a person to another number: an event
    without one (a webhook, late from a number the person changed away from) only fills gaps.
    `contact.number_changed` moves the person to the new number (the old stays an alias);
    `contact.marketing_preference_changed` records the customer's choice, the latest one winning.
    Events without a contact (account and template events) change nothing.
    """
    contact = event.contact
    if contact is None:
        return profile
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
    opted_in = event.data.opted_in if isinstance(event, ContactCreated | ContactUpdated) else None
    return profile.merged(phone=phone, name=contact.name, locale=contact.locale, timezone=contact.timezone,
                          opted_in=opted_in, wa_id=wa_id, profile_name=contact.profile_name)


def _with_marketing(profile: ContactProfile, event: MarketingPreferenceChanged) -> ContactProfile:
    if event.data.category != "marketing_messages":
        return profile
    if profile.marketing_changed_at is not None and event.occurred_at < profile.marketing_changed_at:
        return profile  # an older choice arriving late does not undo a newer one
    return replace(profile, marketing=event.data.value, marketing_changed_at=event.occurred_at)


def absorb(person: ContactProfile, other: ContactProfile) -> ContactProfile:
    """`person` after learning that `other` is the same person: `person`'s known facts win, `other`'s
    fill the gaps; the later marketing choice holds."""
    gaps = {name: getattr(other, name) for name in _FACTS if getattr(person, name) is None}
    merged = replace(person, **gaps)
    if other.marketing_changed_at is not None and (
            merged.marketing_changed_at is None or other.marketing_changed_at > merged.marketing_changed_at):
        merged = replace(merged, marketing=other.marketing, marketing_changed_at=other.marketing_changed_at)
    return merged


_FACTS = ("phone", "name", "locale", "timezone", "opted_in", "wa_id", "profile_name")


def person_keys(tenant: str, person: str) -> tuple[str, ...]:
    """The idempotency keys of the once-per-person flows (R-T1 welcome) for `person`, in a fixed order.

    When a person is absorbed into another, what was decided under its keys counts for the other's
    keys at the same position: one welcome per person, whichever identity was welcomed first.
    """
    return (welcome_key(tenant, person),)


def person_key_moves(tenant: str, absorbed: str, person: str) -> dict[str, str]:
    """absorbed's once-per-person keys → `person`'s (see `person_keys`)."""
    return dict(zip(person_keys(tenant, absorbed), person_keys(tenant, person), strict=True))


def decide(profile: ContactProfile, event: Event, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """What to do about one event, given the person's profile after it.

    Every Send's parameters are cleaned to what the Cloud API accepts (see `parameters`), whichever
    flow decided it.
    """
    decisions: tuple[Decision, ...] = ()
    if isinstance(event, PaymentSucceeded):
        decisions = decide_order_confirmation(profile, event, now, config)  # R-T2
    elif isinstance(event, ContactCreated):
        decisions = decide_welcome(profile, event, now, config)  # R-T1
    return tuple(_sendable(d, config) for d in decisions)


def _sendable(decision: Decision, config: EngineConfig) -> Decision:
    if not isinstance(decision, Send):
        return decision
    if decision.account_id is None:
        # A message no account can carry is not decided as a send: say why instead.
        return Suppress(decision.flow, _no_account(decision.flow, config), decision.contact_key,
                        decision.idempotency_key)
    try:
        return replace(decision, parameters=clean_parameters(decision.parameters, config.parameters))
    except UnsendableParameters as exc:
        return Suppress(decision.flow, str(exc), decision.contact_key, decision.idempotency_key)


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
    return tuple(_sendable(d, config) for d in handler(profile, timer, now, config))


# flow → its `on_timer(profile, timer, now, config)`: the flows that schedule timers register here.
TIMER_FLOWS: dict[str, Callable[[ContactProfile, Timer, datetime, EngineConfig], tuple[Decision, ...]]] = {}
