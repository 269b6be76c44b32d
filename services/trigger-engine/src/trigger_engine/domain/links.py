"""The links a message carries (R-T6.5 one-click resume, R-R4 tracked short links): each is a `ShortLink` the
Send decision carries (published for ingest with the command) and a short URL for the template's parameter.

Codes are deterministic (`scrm_common.links.short_code` of the message's idempotency key and the link's slot):
a decision taken again mints the same link.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from scrm_common.contracts.events import Contact
from scrm_common.contracts.links import ShortLink
from scrm_common.links import RESUME_MAX_AGE_SECONDS, resume_url, short_code, short_url, sign_resume
from trigger_engine.domain.model import ContactProfile, EngineConfig


def link_contact(profile: ContactProfile) -> Contact | None:
    """Who the link is for, as `link.clicked` names them: the person's key (an external id, or their phone when
    that is the key) and phone; None when neither identifies them."""
    key = profile.contact_key
    external = None if key.startswith("+") or not key else key
    phone = profile.phone or (key if key.startswith("+") else None)
    try:
        return Contact(external_id=external, phone=phone) if external or phone else None
    except ValueError:
        return Contact(external_id=external) if external else None


def tracked_link(config: EngineConfig, profile: ContactProfile, *, key: str, flow: str, slot: str, target: str,
                 now: datetime, content: str | None = None, campaign: str | None = None) -> tuple[str, ShortLink]:
    """A tracked short link to `target` for the message `key` of `flow` (slot `tracking`, `specialist` …): the
    URL to write in the message, and the link for ingest (302 to `target` with utm_source=whatsapp,
    utm_campaign = `campaign` or `flow`, utm_content = `content`)."""
    code = short_code(config.links.secret, config.tenant, key, slot, chars=config.links.code_chars)
    link = ShortLink(code=code, tenant=config.tenant, kind="tracked", target=target, flow=flow, campaign=campaign,
                     content=content, idempotency_key=key, contact=link_contact(profile), created_at=now)
    return short_url(config.links.base_url, code), link


def resume_link(config: EngineConfig, profile: ContactProfile, *, key: str, flow: str, cart_id: str,
                checkout_url: str, now: datetime, content: str | None = None,
                max_age_seconds: int = RESUME_MAX_AGE_SECONDS) -> tuple[str, ShortLink]:
    """A one-click resume link (R-T6.5) for the cart `cart_id`: a short link whose target is the signed resume URL
    `{base}/r/{token}` — the token names the tenant, cart, checkout URL, message, flow and stage, stamped `now`,
    valid `max_age_seconds` (24 h) — and which ingest answers with a 302 to the checkout URL while the token
    holds (410 after)."""
    payload = {"t": config.tenant, "c": cart_id, "u": checkout_url, "k": key, "f": flow, "s": content}
    token = sign_resume(config.links.secret, payload, now)
    code = short_code(config.links.secret, config.tenant, key, "resume", chars=config.links.code_chars)
    link = ShortLink(code=code, tenant=config.tenant, kind="resume", target=resume_url(config.links.base_url, token),
                     flow=flow, content=content, idempotency_key=key, contact=link_contact(profile), created_at=now,
                     expires_at=now + timedelta(seconds=max_age_seconds))
    return short_url(config.links.base_url, code), link
