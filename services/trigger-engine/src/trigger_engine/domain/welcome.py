"""R-T1 welcome: a personal greeting with a first-purchase code valid 7 days, once per person.

The welcome goes at once, or after `delay_minutes` as a durable timer (`Schedule`, fired by `welcome_on_timer`
with the person as of then). Either way it expires `expire_after_minutes` after it was due (R-T1.1): the
sender's gate drops it as EXPIRED rather than greet late. The person's first purchase withdraws a welcome that
may still be waiting (`withdraw_welcome`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from pydantic import Field, model_validator

from scrm_common.contracts.events import ContactCreated, PaymentSucceeded
from trigger_engine.domain.copy import contact_zone, day, format_locale, local_day
from trigger_engine.domain.decisions import Cancel, Decision, Schedule, Send, Suppress, Withdraw
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.names import first_name
from trigger_engine.domain.settings import FlowSettings, Templates
from trigger_engine.domain.timers import Timer

FLOW = "welcome"
PURCHASED = "cancelled: purchased"


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
                                      description="a welcome later than this after it was due is not sent: "
                                                  "the sender drops it as expired, also when quiet hours held it "
                                                  "back (R-T1.1: interaction drops after 15 minutes)")
    delay_minutes: int = Field(default=0, ge=0, le=24 * 60,
                               description="minutes after the contact was created before the welcome is due; 0: at "
                                           "once (R-T1.1: within 5 minutes). A purchase meanwhile cancels it")

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


def person_of_key(tenant: str, key: str) -> str | None:
    """The person whose welcome key (`idempotency_key`) `key` is, for `tenant`; None for any other key."""
    prefix = idempotency_key(tenant, "")
    return key[len(prefix):] if key.startswith(prefix) and len(key) > len(prefix) else None


def deadline(created: datetime, settings: WelcomeSettings) -> datetime:
    """When a welcome for a person created at `created` (aware UTC) stops being worth sending: due after
    `delay_minutes`, expired `expire_after_minutes` after that (R-T1.1)."""
    return created + timedelta(minutes=settings.delay_minutes + settings.expire_after_minutes)


def _unwanted(profile: ContactProfile, settings: WelcomeSettings, *, purchased: str) -> str | None:
    """Why the person gets no welcome as of now (None: they may get one); `purchased` is the reason when they
    have already bought something (a first-purchase code would be pointless)."""
    if not settings.enabled:
        return "flow disabled"
    if profile.opted_in is False:
        return "contact has not opted in to marketing"
    if profile.stopped_marketing:
        return "customer stopped marketing messages"
    if profile.purchased:
        return purchased
    return None


def decide_welcome(
    profile: ContactProfile, event: ContactCreated, now: datetime, config: EngineConfig
) -> tuple[Decision, ...]:
    """Greet a new person within the welcome window, by name when known (R-T1).

    Returns one decision: a Suppress (flow disabled, not opted in, stopped marketing, already purchased, or
    `now` past the welcome's deadline — `outcome="expired"`), else with `delay_minutes` 0 the Send (see
    `_greeting`; `expires_at` = `event.occurred_at` + `expire_after_minutes`), else a `Schedule` of the timer
    `idempotency_key(...)` due at `occurred_at + delay_minutes`, expiring `expire_after_minutes` after that, its
    payload the event's `occurred_at` (ISO 8601) and `event_id` for `welcome_on_timer`.
    """
    settings = config.flow(FLOW, WelcomeSettings)
    key = idempotency_key(config.tenant, profile.contact_key)
    reason = _unwanted(profile, settings, purchased="already purchased: no first-purchase welcome")
    if reason is not None:
        return (Suppress(FLOW, reason, profile.contact_key, key),)
    expires = deadline(event.occurred_at, settings)
    if now > expires:
        late = timedelta(minutes=settings.delay_minutes + settings.expire_after_minutes)
        return (Suppress(FLOW, f"expired: contact was created more than {late} ago",
                         profile.contact_key, key, outcome="expired"),)
    if settings.delay_minutes > 0:
        due = event.occurred_at + timedelta(minutes=settings.delay_minutes)
        return (Schedule(FLOW, key, profile.contact_key, due, expires,
                         {"occurred_at": event.occurred_at.isoformat(), "event_id": event.event_id}),)
    return (_greeting(profile, event.occurred_at, expires, config, settings),)


def welcome_on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                     ) -> tuple[Decision, ...]:
    """A delayed welcome's timer fired (R-T1): re-check the person as of `now` — flow disabled, not opted in,
    stopped marketing, or purchased meanwhile (`cancelled: purchased`) → Suppress with the reason; past the
    timer's expiry → Suppress expired (the timer loop normally records that itself) — else the same Send as
    the immediate path, expiring at the timer's `expires_at`. The code's validity counts from the contact's
    creation (`payload["occurred_at"]`; the due time when the payload lacks it)."""
    settings = config.flow(FLOW, WelcomeSettings)
    reason = _unwanted(profile, settings, purchased=PURCHASED)
    if reason is not None:
        return (Suppress(FLOW, reason, profile.contact_key, timer.key),)
    if timer.expired(now):
        return (Suppress(FLOW, f"expired: the welcome was due at {timer.due_at.isoformat()}", profile.contact_key,
                         timer.key, outcome="expired"),)
    created = _created(timer)
    expires = timer.expires_at or timer.due_at + timedelta(minutes=settings.expire_after_minutes)
    return (_greeting(profile, created, expires, config, settings),)


def _created(timer: Timer) -> datetime:
    """The contact's creation as the timer's payload tells it (ISO 8601, aware), else the timer's due time."""
    written = timer.payload.get("occurred_at")
    if isinstance(written, str):
        try:
            created = datetime.fromisoformat(written)
        except ValueError:
            return timer.due_at
        return created if created.tzinfo is not None else timer.due_at
    return timer.due_at


def withdraw_welcome(profile: ContactProfile, event: PaymentSucceeded, now: datetime, config: EngineConfig
                     ) -> tuple[Decision, ...]:
    """The person's first purchase withdraws a welcome that may still be waiting (R-T1; issue 8: no "10 % off
    your first order" after the order confirmation).

    `profile` is the person after `event`: when `event` is their first purchase (`first_purchase_event`), they
    were created (`created_at`) and both the purchase and `now` are before the welcome's deadline (`deadline`),
    returns a `Withdraw` of the welcome's message (sender: dropped if not handed to the provider yet) and, when
    the welcome is delayed (`delay_minutes` > 0), a `Cancel` of its timer, both with reason `cancelled:
    purchased` (a timer left by an earlier delay setting is suppressed when it fires: the person purchased,
    `welcome_on_timer`); else nothing — no
    withdrawal for a second purchase, for a duplicate payment signal, for a welcome long gone or for a person
    who stopped marketing.
    """
    if profile.first_purchase_event != event.event_id or profile.created_at is None or profile.stopped_marketing:
        return ()  # (after a stop the sender drops waiting marketing itself, R-S6)
    settings = config.flow(FLOW, WelcomeSettings)
    until = deadline(profile.created_at, settings)
    if now >= until or event.occurred_at >= until:
        return ()
    key = idempotency_key(config.tenant, profile.contact_key)
    withdraw = Withdraw(FLOW, key, profile.contact_key, PURCHASED, config.account_for(settings))
    if settings.delay_minutes == 0:
        return (withdraw,)
    return withdraw, Cancel(FLOW, key, profile.contact_key, PURCHASED)


def _greeting(profile: ContactProfile, created: datetime, expires: datetime, config: EngineConfig,
              settings: WelcomeSettings) -> Decision:
    """The welcome itself (R-T1.2–R-T1.4), expiring at `expires`: a Send, or a Suppress when the person has no
    phone or the flow no template in their language.

    The code's "valid until" date is the date in the contact's own zone (their time zone, else
    their number's country's, else UTC) at which the code expires (`created` + `code_valid_days`), whatever
    UTC offset the event's timestamp was written with; it is written as the contact's locale writes a date.
    """
    key = idempotency_key(config.tenant, profile.contact_key)
    if not profile.phone:
        return Suppress(FLOW, "no phone number known for contact", profile.contact_key, key)
    language = config.language_for(profile.locale, settings.templates)
    name = greeting_name(profile)
    templates = settings.templates if name else settings.generic_templates
    if language not in templates:
        return Suppress(FLOW, f"no welcome template for language {language}", profile.contact_key, key)
    code = discount_code(config.tenant, profile.contact_key, settings.code_prefix, settings.discount_percent)
    zone = contact_zone(profile.timezone, profile.phone, profile.wa_id)
    valid = local_day(created + timedelta(days=settings.code_valid_days), zone)
    valid_until = day(valid, format_locale(profile.locale, language))
    parameters: tuple[str, ...] = (str(settings.discount_percent), code, valid_until)
    if name:
        parameters = (name, *parameters)
    return Send(FLOW, key, "marketing", profile.contact_key, profile.phone, templates[language], language,
                parameters, config.account_for(settings), expires_at=expires)
