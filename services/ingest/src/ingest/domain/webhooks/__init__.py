"""Meta webhooks → events, as a table of parsers (CLOUD-API.md §5; STYLE "Growing the domain").

`translate(payload, now=…)` walks `entry[].changes[]` and hands each change to the parser of its
`field` in `FIELDS`; the `messages` parser hands each customer message to the parser of its type in
`inbound.MESSAGE_TYPES`. Every item becomes an event (with the phone number id / WABA id that routes
it to a tenant) or a `Skipped` with its reason; nothing is dropped silently and no shape of payload
raises. `route(...)` then assigns events to tenants and skips those no tenant owns.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from functools import partial
from typing import Any

from .accounts import read_account_update, read_business_capability, read_phone_number_quality
from .change import Change, FieldParser, each_item, guarded
from .messages import read_messages
from .model import (
    CALL,
    ECHO,
    MALFORMED,
    UNKNOWN_FIELD,
    UNKNOWN_OBJECT,
    Findings,
    Routed,
    Skipped,
    Translated,
)
from .preferences import read_user_preferences
from .reading import ident
from .routing import route
from .templates import read_template_category, read_template_quality, read_template_status

__all__ = ["FIELDS", "Routed", "Skipped", "Translated", "route", "signature_valid", "translate"]


def signature_valid(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """X-Hub-Signature-256 check over the exact bytes, in constant time (CLOUD-API.md §5.2)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def _echoes(change: Change, out: Findings) -> None:
    # smb_message_echoes: messages the business sent from the WhatsApp Business app — ours, not a reply.
    each_item(change, out, "message_echoes", "echo",
              lambda echo: out.skip(change.field, str(echo.get("type") or "echo")[:32], ECHO,
                                    detail=str(echo.get("id") or "")[:256] or None))


def _calls(change: Change, out: Findings) -> None:
    calls = change.value.get("calls")
    if not isinstance(calls, list) or not calls:
        out.skip(change.field, "call", CALL)
        return
    each_item(change, out, "calls", "call",
              lambda call: out.skip(change.field, str(call.get("event") or "call")[:32], CALL,
                                    detail=str(call.get("id") or "")[:256] or None))


FIELDS: dict[str, FieldParser] = {
    "messages": read_messages,
    "user_preferences": read_user_preferences,
    "message_template_status_update": read_template_status,
    "message_template_quality_update": read_template_quality,
    "template_category_update": read_template_category,
    "account_update": read_account_update,
    "phone_number_quality_update": read_phone_number_quality,
    "business_capability_update": read_business_capability,
    "smb_message_echoes": _echoes,
    "calls": _calls,
}


def translate(payload: Any, *, now: datetime) -> Translated:
    """Every item of a `whatsapp_business_account` webhook as an event or a `Skipped`; never raises.

    `now` (aware) is the time the webhook was received: it stands in for unreadable timestamps.
    """
    out = Findings(now)
    if not isinstance(payload, dict):
        out.skip("", "payload", MALFORMED, detail="payload is not a JSON object")
        return out.translated()
    if payload.get("object") != "whatsapp_business_account":
        out.skip("", "payload", UNKNOWN_OBJECT, detail=str(payload.get("object"))[:64])
        return out.translated()
    entries = payload.get("entry")
    if not isinstance(entries, list):
        out.skip("", "entry", MALFORMED, detail="entry is not an array")
        return out.translated()
    for entry in entries:
        if not isinstance(entry, dict):
            out.skip("", "entry", MALFORMED, detail="entry[] item is not an object")
            continue
        _entry(entry, out)
    return out.translated()


def _entry(entry: dict[str, Any], out: Findings) -> None:
    changes = entry.get("changes")
    if not isinstance(changes, list):
        out.skip("", "changes", MALFORMED, detail="changes is not an array")
        return
    waba_id = ident(entry.get("id"))  # looked up in PostgreSQL: cleaned like every id
    for raw in changes:
        if not isinstance(raw, dict) or not isinstance(raw.get("field"), str):
            out.skip("", "change", MALFORMED, detail="changes[] item is not an object with a field")
            continue
        field = raw["field"][:64]
        value = raw.get("value")
        if not isinstance(value, dict):
            out.skip(field, "value", MALFORMED, detail="value is not an object")
            continue
        parser = FIELDS.get(field)
        if parser is None:
            out.skip(field, "", UNKNOWN_FIELD)
            continue
        change = Change(field=field, value=value, waba_id=waba_id, entry_time=entry.get("time"))
        guarded(out, field, "value", partial(parser, change, out))
