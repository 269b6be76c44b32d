"""Short codes, UTM tagging and signed resume tokens (R-T6.5, R-R4): what the service that mints a link and
ingest, which answers it, must compute alike.

- `short_code(secret, …)`: a base62 code of `CODE_CHARS` characters, an HMAC-SHA256 of the tenant, the
  message's idempotency key and the link's slot under `SCRM_LINK_SECRET`: unguessable without the secret
  (8 characters: 62⁸ ≈ 2.2 × 10¹⁴ codes), and the same on every retry of the same decision.
- `short_url(base, code)`: `{base}/l/{code}`; `code_length(base)` gives codes as long as keeps the whole link
  within 30 characters (R-R4), at least 6: a 19-character base → 8-character codes.
- `with_utm(url, …)`: the URL with `utm_source=whatsapp`, `utm_medium`, `utm_campaign`, `utm_content`.
- `sign_resume` / `read_resume`: an itsdangerous URL-safe timed token (HMAC-SHA1 over the JSON payload, salt
  `scrm.resume`), stamped with the caller's `now`, valid `RESUME_MAX_AGE_SECONDS` (24 h, R-T6.5).
  `read_resume` raises `LinkTampered` (bad signature or payload: 400) or `LinkExpired` (older than the
  max age: 410).
"""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base62
CODE_CHARS = 8
RESUME_MAX_AGE_SECONDS = 24 * 3600  # R-T6.5
MAX_LINK_CHARS = 30  # R-R4
_SALT = "scrm.resume"


class LinkTampered(ValueError):
    """The token's signature or payload does not hold: someone changed it (HTTP 400)."""


class LinkExpired(ValueError):
    """The token is genuine but older than its max age (HTTP 410)."""


MIN_CODE_CHARS, MAX_CODE_CHARS = 6, 12


def code_length(base: str) -> int:
    """How many characters codes get under the public base URL `base`: as many as keep `{base}/l/{code}` within
    `MAX_LINK_CHARS` (R-R4), at least `MIN_CODE_CHARS` (62⁶ ≈ 5.7 × 10¹⁰) and at most `MAX_CODE_CHARS`. A base of
    19 characters gives 8 (`https://wa.shop.de`, 18, gives 9); `http://127.0.0.1:8080` gives 6; a base over 21
    characters makes links longer than 30 (still at least 6 characters of code)."""
    room = MAX_LINK_CHARS - len(short_url(base, ""))
    return max(MIN_CODE_CHARS, min(MAX_CODE_CHARS, room))


def short_code(secret: str, tenant: str, key: str, slot: str, *, chars: int = CODE_CHARS) -> str:
    """The short code of link `slot` (`resume`, `tracking`, `specialist` …) of the message `key` of `tenant`:
    `chars` base62 characters of HMAC-SHA256(secret, tenant ␟ key ␟ slot). Deterministic; unguessable without
    the secret."""
    digest = hmac.new(secret.encode(), "\x1f".join((tenant, key, slot)).encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest, "big")
    out = []
    for _ in range(chars):
        number, digit = divmod(number, 62)
        out.append(ALPHABET[digit])
    return "".join(out)


def short_url(base: str, code: str) -> str:
    """`{base}/l/{code}` (a trailing `/` of `base` is dropped)."""
    return f"{base.rstrip('/')}/l/{code}"


def resume_url(base: str, token: str) -> str:
    """`{base}/r/{token}`: the long form of a resume link (what its short link stands for)."""
    return f"{base.rstrip('/')}/r/{token}"


def with_utm(url: str, *, campaign: str, content: str | None = None, medium: str = "message") -> str:
    """`url` with `utm_source=whatsapp`, `utm_medium`, `utm_campaign` and (when given) `utm_content` (R-R4),
    replacing any `utm_*` the URL had and keeping its other parameters and fragment in order."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    utm = [("utm_source", "whatsapp"), ("utm_medium", medium), ("utm_campaign", campaign)]
    if content:
        utm.append(("utm_content", content))
    return urlunsplit(parts._replace(query=urlencode(kept + utm)))


def _serializer(secret: str, now: datetime) -> URLSafeTimedSerializer:
    stamp = int(now.timestamp())

    class _At(TimestampSigner):
        def get_timestamp(self) -> int:
            return stamp

    return URLSafeTimedSerializer(secret, salt=_SALT, signer=_At)


def sign_resume(secret: str, payload: Mapping[str, Any], now: datetime) -> str:
    """A URL-safe token carrying `payload` (JSON values), signed with `secret` and stamped `now` (aware)."""
    token = _serializer(secret, now).dumps(dict(payload))
    return token if isinstance(token, str) else token.decode()


def read_resume(secret: str, token: str, now: datetime, *,
                max_age_seconds: int = RESUME_MAX_AGE_SECONDS) -> dict[str, Any]:
    """The payload of a token `sign_resume` made, as of `now` (aware). Raises LinkExpired when it was signed
    more than `max_age_seconds` before `now`, LinkTampered for anything else that does not verify (also a
    payload that is not a JSON object)."""
    try:
        payload = _serializer(secret, now).loads(token, max_age=max_age_seconds)
    except SignatureExpired:
        raise LinkExpired(f"the link is older than {max_age_seconds // 3600} hours") from None
    except (BadSignature, ValueError, TypeError):
        raise LinkTampered("the link's signature does not match") from None
    if not isinstance(payload, dict):
        raise LinkTampered("the link's payload is not an object")
    return payload
