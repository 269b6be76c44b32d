"""The records on `scrm.links.v1`: a short link a deciding service minted for a message (R-T6.5, R-R4).

The trigger-engine writes one `ShortLink` per link of a message it decided, through its outbox in the same
transaction as the send command; ingest keeps them (its `short_links` table) and answers `GET /l/{code}`
with a 302 to the target and a `link.clicked` event. Kafka key: `<tenant>:<code>`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from scrm_common.contracts.events import PLAIN, Contact, StrictModel, Text128, Timestamp, Url

# The code's alphabet and length bounds (`scrm_common.links.short_code` mints them: base62).
CODE_PATTERN = r"^[0-9A-Za-z]{6,22}$"


class ShortLink(StrictModel):
    """One short link `{public base URL}/l/{code}` of tenant `tenant`.

    `kind`: `tracked` leads to `target` (with `utm_source=whatsapp`, `utm_medium`, `utm_campaign` = `campaign`
    or `flow`, `utm_content` = `content` added at the redirect); `resume` is a one-click cart resume link whose
    `target` is the signed resume URL `{public base URL}/r/{token}` (`scrm_common.links.sign_resume`): the
    redirect verifies the token (24 h, R-T6.5) and leads to the cart's checkout URL the token names.
    `idempotency_key`, `flow`, `contact` name the message and person the link was made for; `created_at`
    (aware UTC) when it was minted; `expires_at` after which the code answers 410 (None: never)."""

    code: Annotated[str, Field(pattern=CODE_PATTERN)]
    tenant: Text128
    kind: Literal["tracked", "resume"] = "tracked"
    target: Annotated[Url, Field(max_length=4096)]
    flow: Text128
    campaign: Text128 | None = None
    content: Text128 | None = None
    medium: Text128 = "message"
    idempotency_key: Annotated[str, Field(max_length=512), PLAIN] | None = None
    contact: Contact | None = None
    created_at: Timestamp
    expires_at: Timestamp | None = None

    @property
    def kafka_key(self) -> str:
        return f"{self.tenant}:{self.code}"


SHORT_LINK_ADAPTER: TypeAdapter[ShortLink] = TypeAdapter(ShortLink)
