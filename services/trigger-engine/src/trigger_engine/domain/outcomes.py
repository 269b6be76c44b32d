"""A message the engine decided that then failed, as a line of its person's story (R-S2: "template … paused").

The sender (its own refusals: "template order_confirmation (de) is paused") and ingest (Meta's `failed`
webhooks) publish `message.status` on `scrm.events.v1` with the send's idempotency key. Only `failed`
statuses that carry a key are told; `sent`, `delivered` and `read` — most of the log — are skipped from the
record's `type` header and raw bytes, without parsing (`surely_not_failed`). Whose story a failure belongs to
is the person the engine decided that key's Send for; a key it never decided (another platform's message,
another tenant's) is told nowhere. Nothing here raises on a record's content.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from scrm_common.contracts.envelope import EventRecord
from scrm_common.contracts.events import MessageStatus

OUTCOME = "failed"
STATUS_TYPE = "message.status"
# Our own consumer group of `scrm.events.v1`: statuses stay off the decision loop's hot path.
OUTCOMES_GROUP = "trigger-engine-outcomes"

Header = tuple[str, bytes | None]


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """`event_id` (a `message.status`) says the message sent under `idempotency_key` failed, at `at`.

    `reason` is the provider's or the sender's reason with the error code when there is one; a line is
    recorded once per (tenant, event_id).
    """

    tenant: str
    event_id: str
    idempotency_key: str
    reason: str
    at: datetime


def failure_reason(error_reason: str | None, error_code: int | None) -> str:
    """The story's reason for a failed message: "template welcome (de) is paused", "… (error 131026)"."""
    reason = (error_reason or "").strip() or "failed without a reason given"
    return f"{reason} (error {error_code})" if error_code is not None else reason


def surely_not_failed(headers: Sequence[Header], value: bytes | None) -> bool:
    """True when a record of `scrm.events.v1` cannot be a failed `message.status`, told without parsing it.

    Its `type` header names another type, or its JSON spells `failed` nowhere — a JSON string says it
    literally or with `\\u` escapes, so a value with neither cannot hold it (whatever the `type` header, or
    without one).
    """
    for name, raw in headers:
        if name == "type" and raw is not None:
            try:
                kind = raw.decode()
            except UnicodeDecodeError:
                break
            if kind != STATUS_TYPE:
                return True
            break
    raw_value = value or b""
    return b"failed" not in raw_value and b"\\u" not in raw_value


def failed_message(record: EventRecord) -> FailedMessage | None:
    """The failure a decoded event tells: a `failed` `message.status` with an idempotency key; else None."""
    event = record.event
    if not isinstance(event, MessageStatus) or event.data.status != "failed" or not event.data.idempotency_key:
        return None
    return FailedMessage(tenant=record.tenant, event_id=event.event_id, idempotency_key=event.data.idempotency_key,
                         reason=failure_reason(event.data.error_reason, event.data.error_code), at=event.occurred_at)
