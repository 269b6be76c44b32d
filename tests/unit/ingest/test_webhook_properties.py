"""Invariants of webhook intake over payloads of any shape (hypothesis): `translate` never raises, every event
it produces can be published and read back by a consumer, and what it counts can be exposed as metrics.

Strings are drawn with lone surrogates and NUL characters: JSON can carry both (`"\\ud800"`, `"\\u0000"`),
PostgreSQL stores neither, and a Prometheus label or an event body that cannot be encoded as UTF-8 turns a
signed webhook into a 5xx (Meta then retries it for days) or breaks `/metrics` for good.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.domain.webhooks import translate
from scrm_common.contracts.envelope import decode_event, encode_event

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NASTY = ["\ud800", "a\udfffb", "a\x00b", "\x00", "x" * 5000, "1772366400", "4915112345678", "5215512345678",
         "US.13491208655302741918", "wamid.A", "stop", ""]
text = st.text(max_size=40) | st.sampled_from(NASTY)
scalar = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
          | st.floats(allow_nan=False, allow_infinity=False) | text)
KEYS = ["body", "caption", "id", "mime_type", "emoji", "message_id", "payload", "text", "title", "type",
        "button_reply", "list_reply", "nfm_reply", "name", "address", "latitude", "product_items", "catalog_id",
        "currency", "quantity", "response_json", "new_wa_id", "wa_id", "voice", "description", "formatted_name",
        "forwarded", "source_url", "restriction_type", "expiration", "waba_ban_state", "code"]
jsonish = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(KEYS) | text, inner, max_size=4), max_leaves=12)
MESSAGE_TYPES = ["text", "image", "video", "audio", "document", "sticker", "reaction", "location", "contacts",
                 "order", "interactive", "button", "system", "unsupported", "unknown", "edit", "request_welcome"]
message = st.fixed_dictionaries(
    {"from": st.sampled_from(["4915112345678", "5215512345678"]) | jsonish,
     "id": st.sampled_from(["wamid.IN"]) | jsonish, "timestamp": st.just("1772366400") | jsonish,
     "type": st.sampled_from(MESSAGE_TYPES) | text},
    optional={**dict.fromkeys(MESSAGE_TYPES, jsonish), "context": jsonish, "referral": jsonish,
              "errors": jsonish, "from_user_id": jsonish})
status = st.fixed_dictionaries(
    {"id": st.just("wamid.OUT") | jsonish, "status": st.sampled_from(["sent", "delivered", "read", "failed"]) | text,
     "timestamp": st.just("1772366400") | jsonish},
    optional={"recipient_id": jsonish, "recipient_user_id": jsonish, "biz_opaque_callback_data": jsonish,
              "errors": st.lists(st.fixed_dictionaries({"code": st.sampled_from([131050, 131026]) | jsonish,
                                                        "title": jsonish}), max_size=2) | jsonish,
              "pricing": jsonish, "recipient_type": jsonish})
value = st.fixed_dictionaries(
    {"metadata": st.fixed_dictionaries({"phone_number_id": st.just("100000000000001") | jsonish,
                                        "display_phone_number": jsonish})},
    optional={"messages": st.lists(message | jsonish, max_size=3), "statuses": st.lists(status | jsonish, max_size=3),
              "contacts": st.lists(jsonish, max_size=2), "errors": jsonish,
              "user_preferences": st.lists(st.dictionaries(st.sampled_from(
                  ["wa_id", "user_id", "category", "value", "detail", "timestamp"]), jsonish), max_size=2),
              "event": jsonish, "message_template_id": jsonish, "message_template_name": jsonish,
              "message_template_language": jsonish, "reason": jsonish, "restriction_info": jsonish,
              "ban_info": jsonish, "new_quality_score": jsonish, "new_category": jsonish,
              "max_daily_conversations_per_business": jsonish, "message_echoes": jsonish, "calls": jsonish})
FIELDS = ["messages", "user_preferences", "message_template_status_update", "message_template_quality_update",
          "template_category_update", "account_update", "phone_number_quality_update", "business_capability_update",
          "smb_message_echoes", "calls"]
payload = st.fixed_dictionaries({
    "object": st.just("whatsapp_business_account"),
    "entry": st.lists(st.fixed_dictionaries({
        "id": st.just("200000000000001") | jsonish, "time": jsonish,
        "changes": st.lists(st.fixed_dictionaries({"field": st.sampled_from(FIELDS) | text, "value": value}),
                            max_size=2)}), max_size=2)})


def _storable(value: str | None) -> bool:
    """A string PostgreSQL can store and UTF-8 can encode: no NUL, no lone surrogate."""
    return value is None or ("\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(payload)
def test_every_event_round_trips_through_the_broker_and_every_count_is_a_valid_label(raw: Any) -> None:
    translated = translate(raw, now=NOW)  # never raises
    for item in translated.events:
        key, body, headers = encode_event("demo", item.event, ingested_at=NOW)
        assert decode_event(key, body, headers).event == item.event
        assert b"\\u0000" not in body  # a consumer could not store it
        assert _storable(item.phone_number_id) and _storable(item.waba_id)  # looked up in PostgreSQL
        assert _storable(item.field) and _storable(item.type)
    for skipped in [*translated.skipped, *translated.repaired]:
        for label in (skipped.field, skipped.type, skipped.reason):
            label.encode("utf-8")  # Prometheus encodes every label value on each scrape
