"""Meta error codes, their HTTP statuses and the exact error bodies the Cloud API returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR_DOCS_HREF = "/documentation/business-messaging/whatsapp/support/error-codes"

TITLES: dict[int, str] = {
    0: "AuthException",
    2: "Service temporarily unavailable",
    100: "Invalid parameter",
    190: "Invalid OAuth access token - Cannot parse access token",
    130429: "Rate limit hit",
    131000: "Something went wrong",
    131008: "Required parameter is missing",
    131009: "Parameter value is not valid",
    131016: "Service unavailable",
    131021: "Recipient cannot be sender",
    131026: "Message undeliverable",
    131047: "Re-engagement message",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
    "messages on WhatsApp from your business.",
    131051: "Unsupported message type",
    131056: "(Business Account, Consumer Account) pair rate limit hit",
    132000: "Number of parameters does not match the expected number of params",
    132001: "Template name does not exist in the translation",
    132005: "Translated text too long",
    132012: "Parameter format does not match format in the created template",
    132015: "Template is Paused",
    132016: "Template is Disabled",
    132018: "There was an issue with the parameters in your template.",
}

DEFAULT_DETAILS: dict[int, str] = {
    130429: "Cloud API message throughput has been reached.",
    131000: "Something went wrong. Please try again later.",
    131016: "A service is temporarily unavailable. Please try again later.",
    2: "Service temporarily unavailable. Please try again later.",
    131026: "Message Undeliverable.",
    131047: "Message failed to send because more than 24 hours have passed since the customer "
    "last replied to this number.",
    131049: "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    131050: "The recipient stopped marketing messages from this business.",
    131056: "Message failed to send because there were too many messages sent from this phone "
    "number to the same phone number in a short period of time.",
}

_FORBIDDEN = {10, 368, 131005, 131031}
_SERVER = {3, 131000, 131016, 131045, 131057}
_UNAVAILABLE = {2, 133004}


def http_status_for(code: int) -> int:
    """The HTTP status Meta pairs with an error code (CLOUD-API §4.3 notes)."""
    if code in (0, 190):
        return 401
    if code in _FORBIDDEN or 200 <= code <= 299:
        return 403
    if code == 132001:
        return 404
    if code in _SERVER:
        return 500
    if code in _UNAVAILABLE:
        return 503
    return 400


@dataclass(frozen=True, slots=True)
class MetaError:
    """A Cloud API error: code, HTTP status, title and details."""

    code: int
    http_status: int
    title: str
    details: str

    @property
    def message(self) -> str:
        """`(#<code>) <title>`, as Meta formats `error.message`."""
        return f"(#{self.code}) {self.title}"

    def body(self, fbtrace_id: str) -> dict[str, Any]:
        """The synchronous error body."""
        return {
            "error": {
                "message": self.message,
                "type": "OAuthException",
                "code": self.code,
                "error_data": {"messaging_product": "whatsapp", "details": self.details},
                "fbtrace_id": fbtrace_id,
            }
        }

    def webhook_error(self) -> dict[str, Any]:
        """The error object of a `failed` status webhook (no type, no fbtrace_id)."""
        return {
            "code": self.code,
            "title": self.title,
            "message": self.title,
            "error_data": {"details": self.details},
            "href": ERROR_DOCS_HREF,
        }


def meta_error(code: int, details: str | None = None, *, title: str | None = None) -> MetaError:
    """Build the error for `code` with Meta's title and HTTP status."""
    return MetaError(
        code=code,
        http_status=http_status_for(code),
        title=title or TITLES.get(code, "Unknown error"),
        details=details if details is not None else DEFAULT_DETAILS.get(code, TITLES.get(code, "")),
    )
