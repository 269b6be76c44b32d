"""R-T1 welcome: a personal greeting with a first-purchase code valid 7 days."""

from __future__ import annotations

import hashlib
from datetime import datetime

from scrm_common.contracts.events import ContactCreated
from trigger_engine.domain.copy import day
from trigger_engine.domain.decisions import Decision, Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig

FLOW = "welcome"


def discount_code(tenant: str, contact_key: str, prefix: str, percent: int) -> str:
    """A personal, stable code (`WELCOME10-3FA9C1`): redelivery yields the same code."""
    digest = hashlib.sha256(f"{tenant}|{contact_key}".encode()).hexdigest()[:6].upper()
    return f"{prefix}{percent}-{digest}"


# Merge-tag syntaxes of other tools and null-like values that shops export instead of a name.
_MERGE_TAG_CHARS = set("{}[]<>%*|$#@\\")
_NOT_NAMES = {"null", "none", "nil", "undefined", "n/a", "na", "unknown", "customer", "kunde", "test", "name",
              "firstname", "first_name", "vorname"}


def first_name(name: str | None) -> str | None:
    """The name to greet with, or None when there is nothing usable (R-T1.4: never a placeholder)."""
    if not name:
        return None
    if _MERGE_TAG_CHARS & set(name) or name.strip().lower() in _NOT_NAMES:
        return None
    cleaned = name.strip().split()
    if not cleaned:
        return None
    first = cleaned[0]
    if not any(ch.isalpha() for ch in first) or first.lower() in _NOT_NAMES:
        return None
    return first[:40]


def idempotency_key(tenant: str, contact_key: str) -> str:
    return f"{tenant}|{FLOW}|{contact_key}"


def decide_welcome(
    profile: ContactProfile, event: ContactCreated, now: datetime, config: EngineConfig
) -> tuple[Decision, ...]:
    """Greet a new contact within the welcome window, by name when known."""
    flow_config = config.welcome
    key = idempotency_key(config.tenant, profile.contact_key)
    if not flow_config.enabled:
        return (Suppress(FLOW, "flow disabled", profile.contact_key, key),)
    if profile.opted_in is False:
        return (Suppress(FLOW, "contact has not opted in to marketing", profile.contact_key, key),)
    if now - event.occurred_at > flow_config.expire_after:
        return (Suppress(FLOW, f"expired: contact was created more than {flow_config.expire_after} ago",
                         profile.contact_key, key, outcome="expired"),)
    if not profile.phone:
        return (Suppress(FLOW, "no phone number known for contact", profile.contact_key, key),)
    language = config.language_for(profile.locale)
    code = discount_code(config.tenant, profile.contact_key, flow_config.code_prefix, flow_config.discount_percent)
    valid_until = day((event.occurred_at + flow_config.code_valid_for).date(), language)
    name = first_name(profile.name)
    parameters: tuple[str, ...]
    if name:
        template, parameters = flow_config.template, (name, str(flow_config.discount_percent), code, valid_until)
    else:
        template, parameters = flow_config.generic_template, (str(flow_config.discount_percent), code, valid_until)
    return (Send(FLOW, key, "marketing", profile.contact_key, profile.phone, template, language, parameters),)
