"""R-T1 welcome: a personal greeting with a first-purchase code valid 7 days, once per person."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pydantic import Field, model_validator

from scrm_common.contracts.events import ContactCreated
from trigger_engine.domain.copy import contact_zone, day, format_locale, local_day
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.names import first_name
from trigger_engine.domain.settings import FlowSettings, Templates

FLOW = "welcome"


class WelcomeSettings(FlowSettings):
    """R-T1: a greeting with a first-purchase code. `templates` greet by name (parameters: name, percent,
    code, valid until); `generic_templates` greet without one (R-T1.4; percent, code, valid until)."""

    templates: Templates = Field(default_factory=lambda: {"en_US": "welcome", "de": "welcome"},
                                 description="template greeting by name, per language")
    generic_templates: Templates = Field(
        default_factory=lambda: {"en_US": "welcome_generic", "de": "welcome_generic"},
        description="template greeting without a name, per language (R-T1.4)")
    discount_percent: int = Field(default=10, ge=1, le=90, description="first-purchase discount, % (R-T1.2)")
    code_prefix: str = Field(default="WELCOME", pattern=r"^[A-Z0-9]{1,20}$",
                             description="the code's start: `WELCOME` gives `WELCOME10-3FA9C1`")
    code_valid_days: int = Field(default=7, ge=1, le=365, description="days the code is valid (R-T1.3)")
    expire_after_minutes: int = Field(default=15, ge=1, le=7 * 24 * 60,
                                      description="a welcome later than this after the contact is not sent "
                                                  "(R-T1.1: interaction drops after 15 minutes)")

    @model_validator(mode="after")
    def _generic_for_every_language(self) -> WelcomeSettings:
        missing = sorted(set(self.templates) - set(self.generic_templates))
        if missing:
            raise ValueError(f"generic_templates has no template for {', '.join(missing)}: a contact without a name "
                             "is greeted generically (R-T1.4)")
        return self


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
    flow_config = config.flow(FLOW, WelcomeSettings)
    key = idempotency_key(config.tenant, profile.contact_key)
    if not flow_config.enabled:
        return (Suppress(FLOW, "flow disabled", profile.contact_key, key),)
    if profile.opted_in is False:
        return (Suppress(FLOW, "contact has not opted in to marketing", profile.contact_key, key),)
    if profile.stopped_marketing:
        return (Suppress(FLOW, "customer stopped marketing messages", profile.contact_key, key),)
    expire_after = timedelta(minutes=flow_config.expire_after_minutes)
    if now - event.occurred_at > expire_after:
        return (Suppress(FLOW, f"expired: contact was created more than {expire_after} ago",
                         profile.contact_key, key, outcome="expired"),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", profile.contact_key, key),)
    language = config.language_for(profile.locale, flow_config.templates)
    name = greeting_name(profile)
    templates = flow_config.templates if name else flow_config.generic_templates
    if language not in templates:
        return (Suppress(FLOW, f"no welcome template for language {language}", profile.contact_key, key),)
    code = discount_code(config.tenant, profile.contact_key, flow_config.code_prefix, flow_config.discount_percent)
    zone = contact_zone(profile.timezone, profile.phone, profile.wa_id)
    expires = local_day(event.occurred_at + timedelta(days=flow_config.code_valid_days), zone)
    valid_until = day(expires, format_locale(profile.locale, language))
    parameters: tuple[str, ...] = (str(flow_config.discount_percent), code, valid_until)
    if name:
        parameters = (name, *parameters)
    return (Send(FLOW, key, "marketing", profile.contact_key, profile.phone, templates[language], language,
                 parameters, config.account_for(flow_config)),)
