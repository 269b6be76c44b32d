"""What a click on a short link answers (R-T6.5 one-click resume, R-R4 tracked links): pure, time is an argument.

`GET /l/{code}` and `GET /r/{token}` both end here: given the stored `ShortLink` (or None), the result of
verifying a resume token (`verify_resume`), `now` (aware UTC) and who asks (user agent, HEAD or GET), the
answer is a status, a `Location`, the `link.clicked` to publish (or none) and the outcome that is counted
(`scrm_ingest_link_redirects_total{kind, outcome}`).

- unknown or malformed code → 404; a link past its `expires_at` → 410 (R-T6.5);
- `tracked` → 302 to the target with `utm_source=whatsapp`, `utm_medium`, `utm_campaign` = campaign or flow,
  `utm_content` = content (R-R4);
- `resume` → the token (last path part of the target `{base}/r/{token}`) verified: genuine → 302 to the cart's
  checkout URL with UTM; expired (24 h) → 410 with a link to the shop; tampered → 400 (R-T6.5);
- a link preview fetcher (WhatsApp, Slack …) or a HEAD gets the redirect but publishes no click; a link whose
  message names no contact redirects without a click.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from scrm_common.contracts.events import Contact, LinkClickData
from scrm_common.contracts.links import CODE_PATTERN, ShortLink
from scrm_common.links import RESUME_MAX_AGE_SECONDS, LinkExpired, LinkTampered, read_resume, with_utm

Outcome = Literal["redirected", "preview", "unknown", "expired", "tampered", "unavailable"]
LinkKind = Literal["tracked", "resume", "unknown"]

# The link preview fetchers of the messengers a link is shared in (WhatsApp, Facebook, Slack, Telegram, X).
DEFAULT_PREVIEW_AGENTS: tuple[str, ...] = ("WhatsApp", "facebookexternalhit", "Slackbot", "TelegramBot",
                                           "Twitterbot")
# A signature that held but has expired still names the shop: read it back over this much age to link the shop.
_ANY_AGE_SECONDS = 100 * 365 * 24 * 3600
_CODE = re.compile(CODE_PATTERN)


class LinkRules(BaseModel):
    """How ingest answers short links (settings: `SCRM_LINK_PREVIEW_AGENTS`, `SCRM_LINK_RESUME_MAX_AGE_SECONDS`,
    `SCRM_LINK_RETRY_AFTER_SECONDS`)."""

    model_config = ConfigDict(frozen=True)

    preview_agents: tuple[str, ...] = Field(
        default=DEFAULT_PREVIEW_AGENTS,
        description="User-Agent substrings (case-insensitive) of link preview fetchers: redirected, never a click")
    resume_max_age_seconds: int = Field(
        default=RESUME_MAX_AGE_SECONDS, ge=1,
        description="Seconds a resume token is valid after it was signed (R-T6.5: 24 h); older → 410")
    retry_after_seconds: int = Field(
        default=30, ge=1, description="Retry-After (seconds) of the 503 page when the database or broker fails")


@dataclass(frozen=True)
class Verified:
    """A genuine, unexpired resume token: the cart's checkout URL `url` (http/https), the tenant, the message's
    idempotency key, flow and stage it names."""

    tenant: str
    url: str
    key: str | None
    flow: str | None
    content: str | None


@dataclass(frozen=True)
class Expired:
    """A genuine token older than its max age; `shop_url` the origin of the checkout URL it names (or None)."""

    shop_url: str | None


@dataclass(frozen=True)
class Tampered:
    """A token whose signature or payload does not hold."""


Verification = Verified | Expired | Tampered


@dataclass(frozen=True)
class Click:
    """The `link.clicked` to publish for tenant `tenant` about `contact` (event id and time: the adapter's)."""

    tenant: str
    contact: Contact
    data: LinkClickData


@dataclass(frozen=True)
class Answer:
    """What a request for a link gets: HTTP `status` (302, 400, 404, 410), `location` for a 302, the `click` to
    publish (None: publish nothing), the counted `kind` and `outcome`, and for a 410 page `shop_url` (the shop's
    origin to link to, or None)."""

    status: int
    outcome: Outcome
    kind: LinkKind
    location: str | None = None
    click: Click | None = None
    shop_url: str | None = None


def is_code(code: str) -> bool:
    """Whether `code` can be a short code at all (base62, 6–22 characters): anything else is 404 unseen."""
    return _CODE.fullmatch(code) is not None


def resume_token(target: str) -> str:
    """The token of a resume link's target `{base}/r/{token}`: the last part of its path ("" when none)."""
    return urlsplit(target).path.rstrip("/").rsplit("/", 1)[-1]


def origin(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL, None for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _text(payload: dict[str, Any], name: str) -> str | None:
    value = payload.get(name)
    return value if isinstance(value, str) and value else None


def verify_resume(secret: str, token: str, now: datetime, rules: LinkRules) -> Verification:
    """Verify a resume token (`scrm_common.links.sign_resume`) as of `now` (aware): `Verified` with its payload
    (`t` tenant, `u` checkout URL, `k` key, `f` flow, `s` stage), `Expired` after `rules.resume_max_age_seconds`
    (R-T6.5, 24 h), `Tampered` when the signature fails or the payload lacks a tenant or an http(s) URL."""
    try:
        payload = read_resume(secret, token, now, max_age_seconds=rules.resume_max_age_seconds)
    except LinkExpired:
        try:
            old = read_resume(secret, token, now, max_age_seconds=_ANY_AGE_SECONDS)
        except (LinkExpired, LinkTampered):
            return Expired(shop_url=None)
        url = _text(old, "u")
        return Expired(shop_url=origin(url) if url else None)
    except LinkTampered:
        return Tampered()
    tenant, url = _text(payload, "t"), _text(payload, "u")
    if tenant is None or url is None or origin(url) is None:
        return Tampered()
    return Verified(tenant=tenant, url=url, key=_text(payload, "k"), flow=_text(payload, "f"),
                    content=_text(payload, "s"))


def is_preview(user_agent: str | None, rules: LinkRules) -> bool:
    """Whether the request comes from a link preview fetcher (`rules.preview_agents`, case-insensitive)."""
    agent = (user_agent or "").lower()
    return any(name.lower() in agent for name in rules.preview_agents)


def _redirect(link: ShortLink | None, location: str, *, kind: Literal["tracked", "resume"], campaign: str,
              flow: str | None, content: str | None, key: str | None, probe: bool, user_agent: str | None,
              rules: LinkRules) -> Answer:
    """302 to `location`; a click for the link's contact unless a preview fetcher or HEAD asks."""
    if probe or is_preview(user_agent, rules):
        return Answer(302, "preview", kind, location=location)
    click = None
    if link is not None and link.contact is not None:
        try:
            data = LinkClickData(link_id=link.code, url=location, idempotency_key=key, flow=flow, campaign=campaign,
                                 content=content, kind=kind)
        except ValueError:  # a target near its 4096 characters does not fit the event's 2048: redirect, no click
            data = None
        click = Click(tenant=link.tenant, contact=link.contact, data=data) if data is not None else None
    return Answer(302, "redirected", kind, location=location, click=click)


def answer_code(link: ShortLink | None, verification: Verification | None, *, now: datetime,
                user_agent: str | None, probe: bool, rules: LinkRules) -> Answer:
    """What `GET /l/{code}` answers (R-T6.5, R-R4). `link`: the stored link of the code (None: unknown → 404);
    `verification`: `verify_resume` of the token in a `resume` link's target (ignored for `tracked`); `now`
    aware UTC; `probe`: a HEAD request. Past `expires_at` → 410; see the module docstring for the rest."""
    if link is None:
        return Answer(404, "unknown", "unknown")
    if link.expires_at is not None and now >= link.expires_at:
        shop = verification.shop_url if isinstance(verification, Expired) else None
        if isinstance(verification, Verified):
            shop = origin(verification.url)
        return Answer(410, "expired", link.kind, shop_url=shop or origin(link.target))
    if link.kind == "tracked":
        campaign = link.campaign or link.flow
        location = with_utm(link.target, campaign=campaign, content=link.content, medium=link.medium)
        return _redirect(link, location, kind="tracked", campaign=campaign, flow=link.flow, content=link.content,
                         key=link.idempotency_key, probe=probe, user_agent=user_agent, rules=rules)
    return _answer_resume(link, verification, user_agent=user_agent, probe=probe, rules=rules)


def answer_token(verification: Verification, link: ShortLink | None, *, user_agent: str | None, probe: bool,
                 rules: LinkRules) -> Answer:
    """What `GET /r/{token}` (the long form of a resume link) answers: 400 tampered, 410 expired, else 302 to the
    checkout URL; a click only when `link` (the stored resume short link of the token's message) names a
    contact."""
    return _answer_resume(link, verification, user_agent=user_agent, probe=probe, rules=rules)


def _answer_resume(link: ShortLink | None, verification: Verification | None, *, user_agent: str | None,
                   probe: bool, rules: LinkRules) -> Answer:
    if isinstance(verification, Expired):
        return Answer(410, "expired", "resume", shop_url=verification.shop_url)
    if not isinstance(verification, Verified) or (link is not None and link.tenant != verification.tenant):
        return Answer(400, "tampered", "resume")
    flow = (link.flow if link is not None else None) or verification.flow or "resume"
    campaign = (link.campaign if link is not None else None) or flow
    medium = link.medium if link is not None else "message"
    location = with_utm(verification.url, campaign=campaign, content=verification.content, medium=medium)
    key = verification.key or (link.idempotency_key if link is not None else None)
    return _redirect(link, location, kind="resume", campaign=campaign, flow=flow, content=verification.content,
                     key=key, probe=probe, user_agent=user_agent, rules=rules)
