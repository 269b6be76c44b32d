"""Meta webhook payloads → `message.status` and `message.inbound` events (CLOUD-API.md §5)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from scrm_common.contracts.events import (
    Contact,
    InboundData,
    MessageInbound,
    MessageStatus,
    StatusData,
)

_STATUSES = {"sent", "delivered", "read", "failed"}


def signature_valid(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """X-Hub-Signature-256 check over the exact bytes, in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


@dataclass(frozen=True, slots=True)
class Translated:
    """Events found in one webhook, per receiving phone number id, and what was skipped."""

    events: list[tuple[str, MessageStatus | MessageInbound]]  # (phone_number_id, event)
    skipped: int


def _when(raw: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.fromtimestamp(0, UTC)


def _inbound_text(msg: dict[str, Any]) -> str | None:
    kind = msg.get("type")
    if kind == "text":
        return (msg.get("text") or {}).get("body")
    if kind == "button":
        button = msg.get("button") or {}
        return button.get("text") or button.get("payload")
    if kind == "interactive":
        inter = msg.get("interactive") or {}
        reply = inter.get("button_reply") or inter.get("list_reply") or {}
        return reply.get("title") or reply.get("id")
    return None


def translate(payload: Any) -> Translated:
    """Every status and inbound message in a `whatsapp_business_account` webhook, as events."""
    out: list[tuple[str, MessageStatus | MessageInbound]] = []
    skipped = 0
    if not isinstance(payload, dict) or payload.get("object") != "whatsapp_business_account":
        return Translated([], 0)
    for entry in payload.get("entry") or []:
        for change in (entry or {}).get("changes") or []:
            if (change or {}).get("field") != "messages":
                continue
            value = change.get("value") or {}
            number_id = str((value.get("metadata") or {}).get("phone_number_id") or "")
            names = {c.get("wa_id"): (c.get("profile") or {}).get("name") for c in value.get("contacts") or []}
            for status in value.get("statuses") or []:
                try:
                    out.append((number_id, _status_event(status, number_id)))
                except (ValidationError, ValueError, KeyError, TypeError):
                    skipped += 1
            for msg in value.get("messages") or []:
                try:
                    event = _inbound_event(msg, number_id, names.get(msg.get("from")))
                except (ValidationError, ValueError, KeyError, TypeError):
                    event = None
                if event is None:
                    skipped += 1
                else:
                    out.append((number_id, event))
    return Translated(out, skipped)


def _status_event(status: dict[str, Any], number_id: str) -> MessageStatus:
    kind = status["status"]
    if kind not in _STATUSES:
        raise ValueError(f"status {kind!r} is not tracked")
    wamid = str(status["id"])
    errors = status.get("errors") or []
    first = errors[0] if errors else {}
    return MessageStatus(
        event_id=f"wa:{wamid}:{kind}"[:128],
        type="message.status",
        occurred_at=_when(status.get("timestamp")),
        contact=Contact(phone="+" + str(status["recipient_id"]).lstrip("+")),
        data=StatusData(
            message_id=wamid,
            status=kind,
            error_code=int(first["code"]) if first.get("code") is not None else None,
            error_reason=(first.get("title") or first.get("message") or None),
            idempotency_key=status.get("biz_opaque_callback_data") or None,
            account_id=number_id or None,
        ),
    )


def _inbound_event(msg: dict[str, Any], number_id: str, name: str | None) -> MessageInbound | None:
    text = _inbound_text(msg)
    if text is None:
        return None
    wamid = str(msg["id"])
    return MessageInbound(
        event_id=f"wa:{wamid}"[:128],
        type="message.inbound",
        occurred_at=_when(msg.get("timestamp")),
        contact=Contact(phone="+" + str(msg["from"]).lstrip("+"), name=name),
        data=InboundData(text=text[:4096], account_id=number_id or None, message_id=wamid),
    )
