"""Meta webhooks: signature over the exact bytes; statuses and inbound messages become events."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest.domain.webhooks import signature_valid, translate

SECRET = "app-secret"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("body", "header", "valid"), [
    (BODY, sign(BODY), True),
    (BODY, sign(BODY).upper().replace("SHA256=", "sha256="), True),
    (BODY, sign(BODY, "other-secret"), False),
    (BODY, sign(BODY).removeprefix("sha256="), False),
    (BODY, "sha1=" + sign(BODY).removeprefix("sha256="), False),
    (BODY + b" ", sign(BODY), False),
    (BODY.replace(b"[]", b"[{}]"), sign(BODY), False),
    (BODY, None, False),
    (BODY, "", False),
    (BODY, "sha256=", False),
])
def test_signature_is_checked_over_the_exact_body(body, header, valid):
    assert signature_valid(SECRET, body, header) is valid


def webhook(*, statuses: list[dict[str, Any]] | None = None, messages: list[dict[str, Any]] | None = None,
            field: str = "messages") -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "4930123456", "phone_number_id": "PNID-1"},
        "contacts": [{"wa_id": "4915112345678", "profile": {"name": "Anna"}}],
    }
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["messages"] = messages
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": field, "value": value}]}]}


def status(kind: str = "delivered", wamid: str = "wamid.A", **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": kind, "timestamp": "1772366400", "recipient_id": "4915112345678", **extra}


def test_statuses_become_message_status_events_keyed_by_wamid_and_status():
    payload = webhook(statuses=[status("sent", biz_opaque_callback_data="acme|order_confirmation|A-1"),
                                status("delivered"), status("read")])
    result = translate(payload)
    assert result.skipped == 0
    assert [n for n, _ in result.events] == ["PNID-1"] * 3
    events = [e for _, e in result.events]
    assert [e.event_id for e in events] == ["wa:wamid.A:sent", "wa:wamid.A:delivered", "wa:wamid.A:read"]
    first = events[0]
    assert first.type == "message.status"
    assert first.contact.phone == "+4915112345678"
    assert first.occurred_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert first.data.message_id == "wamid.A"
    assert first.data.idempotency_key == "acme|order_confirmation|A-1"
    assert first.data.account_id == "PNID-1"
    assert events[1].data.idempotency_key is None


def test_failed_status_carries_the_first_error_code_and_reason():
    errors = [{"code": 131026, "title": "Message undeliverable"}, {"code": 1}]
    (_, event), = translate(webhook(statuses=[status("failed", errors=errors)])).events
    assert (event.data.status, event.data.error_code, event.data.error_reason) == (
        "failed", 131026, "Message undeliverable")


@pytest.mark.parametrize(("message", "text"), [
    ({"type": "text", "text": {"body": "STOP"}}, "STOP"),
    ({"type": "button", "button": {"text": "Yes please", "payload": "YES"}}, "Yes please"),
    ({"type": "button", "button": {"payload": "YES"}}, "YES"),
    ({"type": "interactive", "interactive": {"button_reply": {"id": "b1", "title": "Track"}}}, "Track"),
    ({"type": "interactive", "interactive": {"list_reply": {"id": "l1"}}}, "l1"),
])
def test_inbound_messages_become_message_inbound_events(message, text):
    raw = {"from": "4915112345678", "id": "wamid.IN", "timestamp": "1772366400", **message}
    result = translate(webhook(messages=[raw]))
    (_, event), = result.events
    assert event.type == "message.inbound"
    assert event.event_id == "wa:wamid.IN"
    assert event.data.text == text
    assert event.data.message_id == "wamid.IN"
    assert event.contact.phone == "+4915112345678"
    assert event.contact.name == "Anna"


def test_unsupported_types_and_bad_recipients_are_skipped_and_counted():
    messages = [
        {"from": "4915112345678", "id": "wamid.1", "timestamp": "1", "type": "image", "image": {"id": "m"}},
        {"from": "4915112345678", "id": "wamid.2", "timestamp": "1", "type": "text", "text": {"body": "hi"}},
        {"from": "123", "id": "wamid.3", "timestamp": "1", "type": "text", "text": {"body": "hi"}},
        {"id": "wamid.4", "type": "text", "text": {"body": "no sender"}},
    ]
    statuses = [status("deleted"), status("delivered", recipient_id="12"), status("read"), {"id": "x"}]
    result = translate(webhook(statuses=statuses, messages=messages))
    assert [e.event_id for _, e in result.events] == ["wa:wamid.A:read", "wa:wamid.2"]
    assert result.skipped == 6


@pytest.mark.parametrize("payload", [
    None, [], "x", {"object": "page", "entry": []}, {"object": "whatsapp_business_account"},
    webhook(statuses=[status()], field="account_update"),
])
def test_other_payloads_translate_to_nothing(payload):
    result = translate(payload)
    assert (result.events, result.skipped) == ([], 0)


def test_bad_timestamp_falls_back_to_the_epoch_rather_than_failing():
    (_, event), = translate(webhook(statuses=[status(timestamp="soon")])).events
    assert event.occurred_at == datetime(1970, 1, 1, tzinfo=UTC)
