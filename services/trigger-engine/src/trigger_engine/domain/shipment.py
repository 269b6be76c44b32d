"""R-T3 shipment updates: one short utility message per status step, never a step back.

Memory slot `shipments` (order id → {"rank", "status", "event_id", "at"}): a `shipment.updated` raises the order's
rank (shipped 1 < out_for_delivery 2 < delivered 3) only when its own rank is higher, and the event that raised it
is the one that is told. The same status twice is told once; a status arriving after a later one (shipped after
delivered) is never told.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

from pydantic import Field, model_validator

from scrm_common.contracts.events import Event, ShipmentUpdated
from trigger_engine.domain.copy import url_with
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.links import tracked_link
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings, Templates
from trigger_engine.domain.text import clean_text

FLOW = "shipment_update"
SLOT = "shipments"
# The order of the steps of a shipment (R-T3): a later step is never followed by an earlier one.
RANKS: Mapping[str, int] = MappingProxyType({"shipped": 1, "out_for_delivery": 2, "delivered": 3})
MAX_SHIPMENTS = 50  # orders remembered per person (the least recently updated go first)

STATUS_TEXTS: dict[str, dict[str, str]] = {
    "en": {"shipped": "shipped", "out_for_delivery": "out for delivery", "delivered": "delivered"},
    "de": {"shipped": "versandt", "out_for_delivery": "in Zustellung", "delivered": "zugestellt"},
}
OUR_CARRIER: dict[str, str] = {"en": "our carrier", "de": "unserem Versanddienstleister"}


class ShipmentSettings(FlowSettings):
    """R-T3: every shipment status step (shipped, out for delivery, delivered) → one short utility message.
    Template parameters: order number, status text, carrier, tracking short link."""

    templates: Templates = Field(default_factory=lambda: {"en_US": "shipment_update", "de": "shipment_update"},
                                 description="template per language")
    status_texts: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {lang: dict(texts) for lang, texts in STATUS_TEXTS.items()},
        description="base language (`en`, `de`) → status → the status as the message says it; `en` is the fallback")
    carrier_fallback: dict[str, str] = Field(
        default_factory=lambda: dict(OUR_CARRIER),
        description="base language → the carrier's name when the shop names none (`our carrier`); `en` the fallback")
    expire_after_minutes: int = Field(default=48 * 60, ge=1, le=30 * 24 * 60,
                                      description="a status message later than this after the event is not sent "
                                                  "(the parcel has moved on)")

    @model_validator(mode="after")
    def _every_status_in_english(self) -> ShipmentSettings:
        missing = sorted(set(RANKS) - set(self.status_texts.get("en", {})))
        if missing:
            raise ValueError(f"status_texts.en has no text for {', '.join(missing)}: English is every language's "
                             "fallback")
        if not self.carrier_fallback.get("en", "").strip():
            raise ValueError("carrier_fallback.en is missing: English is every language's fallback")
        return self


def idempotency_key(tenant: str, order_id: str, status: str) -> str:
    """One message per order and status, however often the shop posts it."""
    return f"{tenant}|{FLOW}|{order_id}|{status}"


def evolve_shipments(profile: ContactProfile, event: Event) -> ContactProfile:
    """The person's shipments after `event` (memory slot `shipments`): a `shipment.updated` whose status ranks
    higher than the order's remembered one (or of an order not remembered) becomes the order's
    {"rank", "status", "event_id", "at" (ISO UTC occurred_at)}; any other event changes nothing. At most
    `MAX_SHIPMENTS` orders are kept, the least recently updated forgotten first."""
    if not isinstance(event, ShipmentUpdated):
        return profile
    data = event.data
    known = dict(profile.slot(SLOT))
    rank = RANKS[data.status]
    before = known.get(data.order_id)
    if before is not None and int(before.get("rank") or 0) >= rank:
        return profile
    known[data.order_id] = {"rank": rank, "status": data.status, "event_id": event.event_id,
                            "at": event.occurred_at.isoformat()}
    if len(known) > MAX_SHIPMENTS:
        newest = sorted(known, key=lambda order: str(known[order].get("at") or ""))[-MAX_SHIPMENTS:]
        known = {order: known[order] for order in newest}
    return profile.with_slot(SLOT, MappingProxyType(known))


def decide_shipment(profile: ContactProfile, event: ShipmentUpdated, now: datetime, config: EngineConfig
                    ) -> tuple[Decision, ...]:
    """A status step forward → one utility message (R-T3); `profile` is the person after `event`.

    The event that raised the order's rank (memory `event_id` is the event's) → a Send under
    `idempotency_key(tenant, order_id, status)` with parameters: order number, status text in the person's
    language, carrier (or "our carrier"), a tracked short link (slot `tracking`, utm_content = status) to the
    event's `tracking_url`, else the tenant's `tracking_url` with the order number; expiring
    `expire_after_minutes` after the event. Any other event → a Suppress: "already told: shipped" (the same
    status again) or "out of order: delivered was already told" (an earlier step after a later one). Also
    suppressed with the reason: flow disabled, expired, no phone, no template for the person's language.
    """
    settings = config.flow(FLOW, ShipmentSettings)
    data = event.data
    key = idempotency_key(config.tenant, data.order_id, data.status)
    person = profile.contact_key
    if not settings.enabled:
        return (Suppress(FLOW, "flow disabled", person, key),)
    told: Mapping[str, Any] | None = profile.slot(SLOT).get(data.order_id)
    if told is None or told.get("event_id") != event.event_id:
        told_status = str(told.get("status")) if told is not None else data.status
        if told_status == data.status:
            return (Suppress(FLOW, f"already told: {data.status}", person, key),)
        return (Suppress(FLOW, f"out of order: {told_status} was already told", person, key),)
    expires = event.occurred_at + timedelta(minutes=settings.expire_after_minutes)
    if now > expires:
        return (Suppress(FLOW, f"expired: the shipment update is older than {settings.expire_after_minutes} minutes",
                         person, key, outcome="expired"),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", person, key),)
    language = config.language_for(profile.locale, settings.templates)
    if language not in settings.templates:
        return (Suppress(FLOW, f"no shipment_update template for language {language}", person, key),)
    base = language.split("_", 1)[0]
    texts = settings.status_texts.get(base) or {}
    status_text = texts.get(data.status) or settings.status_texts["en"][data.status]
    carrier = clean_text(data.carrier or "") or settings.carrier_fallback.get(base) or settings.carrier_fallback["en"]
    target = data.tracking_url or url_with(config.settings.tracking_url, order_id=data.order_id)
    url, link = tracked_link(config, profile, key=key, flow=FLOW, slot="tracking", target=target, now=now,
                             content=data.status)
    parameters = (clean_text(data.order_id), status_text, carrier, url)
    return (Send(FLOW, key, "utility", person, profile.phone, settings.templates[language], language, parameters,
                 config.account_for(settings), expires_at=expires, links=(link,)),)
