"""The engine's heart: `evolve(profile, event)` and `decide(profile, event, now, config)`."""

from __future__ import annotations

from datetime import datetime

from scrm_common.contracts.events import ContactCreated, ContactUpdated, Event, PaymentSucceeded
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.order_confirmation import decide_order_confirmation
from trigger_engine.domain.welcome import decide_welcome


def evolve(profile: ContactProfile, event: Event) -> ContactProfile:
    """The profile after an event: contact fields on any event update it (CONTRACT §2)."""
    contact = event.contact
    opted_in = None
    if isinstance(event, ContactCreated | ContactUpdated):
        opted_in = event.data.opted_in
    return profile.merged(phone=contact.phone, name=contact.name, locale=contact.locale,
                          timezone=contact.timezone, opted_in=opted_in)


def decide(profile: ContactProfile, event: Event, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """What to do about one event, given the contact's profile after it."""
    decisions: tuple[Decision, ...] = ()
    if isinstance(event, PaymentSucceeded):
        decisions = decide_order_confirmation(profile, event, now, config)  # R-T2
    elif isinstance(event, ContactCreated):
        decisions = decide_welcome(profile, event, now, config)  # R-T1
    if config.account_id is None:
        # A message no account can carry is not decided as a send: say why instead.
        return tuple(Suppress(d.flow, "no WhatsApp account configured for this tenant", d.contact_key,
                              d.idempotency_key) if isinstance(d, Send) else d for d in decisions)
    return decisions


# Which flow an event type triggers: used to record duplicates against the flow they would have fed.
FLOW_OF_EVENT = {"payment.succeeded": "order_confirmation", "contact.created": "welcome"}

# What the engine reads: events that trigger a flow or carry contact fields. Delivery receipts
# (message.status) are the bulk of the log and change nothing here, so they are skipped unparsed.
EVENTS_READ: frozenset[str] = frozenset({
    "contact.created", "contact.updated", "cart.updated", "payment.succeeded", "payment.failed",
    "shipment.updated", "order.returned", "product.price_changed", "feedback.submitted", "message.inbound",
    "link.clicked",
})
