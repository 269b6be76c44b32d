"""R-T1 welcome: a personal greeting with a first-purchase code valid 7 days, once per person."""

from __future__ import annotations

import hashlib
from datetime import datetime

from scrm_common.contracts.events import ContactCreated
from trigger_engine.domain.copy import contact_zone, day, format_locale, local_day
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.names import first_name

FLOW = "welcome"


def discount_code(tenant: str, contact_key: str, prefix: str, percent: int) -> str:
    """A personal, stable code (`WELCOME10-3FA9C1`): redelivery yields the same code."""
    digest = hashlib.sha256(f"{tenant}|{contact_key}".encode()).hexdigest()[:6].upper()
    return f"{prefix}{percent}-{digest}"


def greeting_name(profile: ContactProfile) -> str | None:
    """The first name to greet with: from the shop's name; from the WhatsApp profile name only when
    the shop gave none. None: greet generically (R-T1.4)."""
    if profile.name and profile.name.strip():
        return first_name(profile.name)
    return first_name(profile.profile_name)


def idempotency_key(tenant: str, person: str) -> str:
    """One welcome per person, whichever of their identities (guest id, customer id …) is created."""
    return f"{tenant}|{FLOW}|{person}"


def decide_welcome(
    profile: ContactProfile, event: ContactCreated, now: datetime, config: EngineConfig
) -> tuple[Decision, ...]:
    """Greet a new person within the welcome window, by name when known.

    The code's "valid until" date is the date in the contact's own zone (their time zone, else
    their number's country's, else UTC) at which the code expires, whatever UTC offset the event's
    timestamp was written with; it is written as the contact's locale writes a date.
    """
    flow_config = config.welcome
    key = idempotency_key(config.tenant, profile.contact_key)
    if not flow_config.enabled:
        return (Suppress(FLOW, "flow disabled", profile.contact_key, key),)
    if profile.opted_in is False:
        return (Suppress(FLOW, "contact has not opted in to marketing", profile.contact_key, key),)
    if profile.stopped_marketing:
        return (Suppress(FLOW, "customer stopped marketing messages", profile.contact_key, key),)
    if now - event.occurred_at > flow_config.expire_after:
        return (Suppress(FLOW, f"expired: contact was created more than {flow_config.expire_after} ago",
                         profile.contact_key, key, outcome="expired"),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", profile.contact_key, key),)
    language = config.language_for(profile.locale)
    code = discount_code(config.tenant, profile.contact_key, flow_config.code_prefix, flow_config.discount_percent)
    zone = contact_zone(profile.timezone, profile.phone, profile.wa_id)
    expires = local_day(event.occurred_at + flow_config.code_valid_for, zone)
    valid_until = day(expires, format_locale(profile.locale, language))
    name = greeting_name(profile)
    parameters: tuple[str, ...]
    if name:
        template, parameters = flow_config.template, (name, str(flow_config.discount_percent), code, valid_until)
    else:
        template, parameters = flow_config.generic_template, (str(flow_config.discount_percent), code, valid_until)
    return (Send(FLOW, key, "marketing", profile.contact_key, profile.phone, template, language, parameters),)
