"""Meta webhooks: signature over the exact bytes; every item an event or a counted skip; no shape raises."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from ingest.domain.webhooks import Routed, route, signature_valid, translate
from ingest.domain.webhooks.change import guarded
from ingest.domain.webhooks.model import Findings
from scrm_common.contracts.envelope import decode_event, encode_event
from scrm_common.contracts.events import Contact, InboundData, MessageInbound, MessageStatus

SECRET = "app-secret"
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


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


def webhook(*, statuses: list[Any] | None = None, messages: list[Any] | None = None,
            contacts: list[Any] | None = None, field: str = "messages") -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "+1 555-000-1111", "phone_number_id": "PNID-1"},
        "contacts": [{"wa_id": "4915112345678", "profile": {"name": "Anna"}}] if contacts is None else contacts,
    }
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["messages"] = messages
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA-1", "changes": [{"field": field, "value": value}]}]}


def status(kind: str = "delivered", wamid: str = "wamid.A", **extra: Any) -> dict[str, Any]:
    return {"id": wamid, "status": kind, "timestamp": "1772366400", "recipient_id": "4915112345678", **extra}


def text(body: str = "hi", *, sender: str = "4915112345678", wamid: str = "wamid.IN", **extra: Any) -> dict[str, Any]:
    return {"from": sender, "id": wamid, "timestamp": "1772366400", "type": "text", "text": {"body": body}, **extra}


def events_of(payload: Any) -> list[Any]:
    return [item.event for item in translate(payload, now=NOW).events]


def test_statuses_become_message_status_events_keyed_by_wamid_and_status():
    payload = webhook(statuses=[status("sent", biz_opaque_callback_data="acme|order_confirmation|A-1"),
                                status("delivered"), status("read")])
    result = translate(payload, now=NOW)
    assert result.skipped == [] and result.repaired == []
    assert {(r.phone_number_id, r.waba_id) for r in result.events} == {("PNID-1", "WABA-1")}
    events = [r.event for r in result.events]
    assert [e.event_id for e in events] == ["wa:wamid.A:sent", "wa:wamid.A:delivered", "wa:wamid.A:read"]
    first = events[0]
    assert isinstance(first, MessageStatus) and first.contact is not None
    assert (first.contact.phone, first.contact.wa_id) == ("+4915112345678", "4915112345678")
    assert first.occurred_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert first.data.idempotency_key == "acme|order_confirmation|A-1"
    assert first.data.account_id == "PNID-1"
    assert events[1].data.idempotency_key is None


def test_failed_status_carries_the_first_error_code_and_reason():
    errors = [{"code": 131026, "title": "Message undeliverable"}, {"code": 1}]
    [event] = events_of(webhook(statuses=[status("failed", errors=errors)]))
    assert (event.data.status, event.data.error_code, event.data.error_reason) == (
        "failed", 131026, "Message undeliverable")


@pytest.mark.parametrize(("code", "kept"), [(2**31 - 1, 2**31 - 1), (2**31, None), (2**40, None), (-1, None),
                                            ("131026", 131026), ("99999999999999", None)])
def test_a_failed_status_is_kept_whatever_its_code(code, kept):
    """A code no reader's 32-bit column could hold is left out; the failure itself is kept."""
    [event] = events_of(webhook(statuses=[status("failed", errors=[{"code": code, "title": "x"}])]))
    assert (event.data.status, event.data.error_code) == ("failed", kept)


@pytest.mark.parametrize(("recipient", "user", "wa_id", "phone", "user_id"), [
    ("4915112345678", None, "4915112345678", "+4915112345678", None),   # Germany: valid
    ("5215512345678", None, "5215512345678", None, None),                # Mexico's legacy 521 form
    ("551187654321", None, "551187654321", None, None),                  # Brazil: 8-digit mobile
    ("5511987654321", None, "5511987654321", "+5511987654321", None),    # Brazil: 9-digit mobile
    ("5491123456789", None, "5491123456789", "+5491123456789", None),    # Argentina mobile with its 9
    ("919876543210", "IN.998877", "919876543210", "+919876543210", "IN.998877"),
    (None, "US.13491208655302741918", None, None, "US.13491208655302741918"),
])
def test_a_status_is_never_dropped_for_its_recipient(recipient, user, wa_id, phone, user_id):
    extra: dict[str, Any] = {"recipient_user_id": user} if user else {}
    raw = status("read", **extra)
    if recipient is None:
        del raw["recipient_id"]
    else:
        raw["recipient_id"] = recipient
    [event] = events_of(webhook(statuses=[raw]))
    assert (event.contact.wa_id, event.contact.phone, event.contact.user_id) == (wa_id, phone, user_id)
    assert event.data.message_id == "wamid.A"


@pytest.mark.parametrize("recipient", [None, "", "+49 151", "abc", 12, ["4915112345678"]])
def test_a_status_with_an_unreadable_recipient_has_no_contact_but_is_kept(recipient):
    raw = status("delivered", biz_opaque_callback_data="t|welcome|1")
    raw["recipient_id"] = recipient
    [event] = events_of(webhook(statuses=[raw]))
    assert event.contact is None
    assert (event.data.message_id, event.data.idempotency_key) == ("wamid.A", "t|welcome|1")


@pytest.mark.parametrize(("codes", "with_recipient", "preferences"), [
    ([131050], True, 1), ([131026, 131050], True, 1), ([131050], False, 0), ([131049], True, 0), ([], True, 0),
])
def test_a_131050_failure_is_also_the_contacts_marketing_stop(codes, with_recipient, preferences):
    raw = status("failed", errors=[{"code": c, "title": "t"} for c in codes])
    if not with_recipient:
        del raw["recipient_id"]
    events = events_of(webhook(statuses=[raw]))
    stops = [e for e in events if e.type == "contact.marketing_preference_changed"]
    assert len(stops) == preferences
    for stop in stops:
        assert (stop.data.value, stop.data.source, stop.contact.wa_id) == ("stop", "error_131050", "4915112345678")


@pytest.mark.parametrize(("message", "kind", "said", "reply_id"), [
    ({"type": "text", "text": {"body": "STOP"}}, "text", "STOP", None),
    ({"type": "button", "button": {"text": "Yes please", "payload": "YES"}}, "button", "Yes please", "YES"),
    ({"type": "button", "button": {"payload": "YES"}}, "button", None, "YES"),
    ({"type": "interactive", "interactive": {"button_reply": {"id": "b1", "title": "Track"}}}, "interactive", "Track", "b1"),
    ({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "l1"}}}, "interactive", None, "l1"),
    ({"type": "interactive", "interactive": {"type": "call_permission_reply", "call_permission_reply": {}}},
     "interactive", None, None),
    ({"type": "image", "image": {"id": "m1", "caption": "Passt das?"}}, "image", "Passt das?", None),
    ({"type": "video", "video": {"id": "m2"}}, "video", None, None),
    ({"type": "document", "document": {"id": "m3", "filename": "a.pdf"}}, "document", None, None),
    ({"type": "audio", "audio": {"id": "m4", "voice": True}}, "voice", None, None),
    ({"type": "reaction", "reaction": {"message_id": "wamid.OURS", "emoji": "❤️"}}, "reaction", "❤️", None),
    ({"type": "location", "location": {"latitude": 1.5, "longitude": 2.5}}, "location", None, None),
    ({"type": "order", "order": {"product_items": []}}, "order", None, None),
    ({"type": "unsupported", "unsupported": {"type": "poll_creation"}}, "unsupported", None, None),
])
def test_every_customer_message_type_is_an_inbound_event(message, kind, said, reply_id):
    raw = {"from": "4915112345678", "id": "wamid.IN", "timestamp": "1772366400", **message}
    [event] = events_of(webhook(messages=[raw]))
    assert isinstance(event, MessageInbound)
    assert (event.event_id, event.data.type, event.data.text, event.data.reply_id) == ("wa:wamid.IN", kind, said, reply_id)
    assert event.data.message_id == "wamid.IN"


@pytest.mark.parametrize(("sender", "phone"), [
    ("4915112345678", "+4915112345678"), ("5215512345678", None), ("447911123456", "+447911123456"),
])
def test_the_profile_name_never_becomes_the_shops_name(sender, phone):
    raw = text(sender=sender)
    [event] = events_of(webhook(messages=[raw], contacts=[{"wa_id": sender, "profile": {"name": "🦄 Lucky"}}]))
    assert (event.contact.name, event.contact.profile_name) == (None, "🦄 Lucky")
    assert (event.contact.wa_id, event.contact.phone) == (sender, phone)


@pytest.mark.parametrize(("body", "expected"), [
    ("Danke \ud83e!", "Danke \ufffd!"),
    ("\udc00 vorne", "\ufffd vorne"),
    ("hinten \ud83d", "hinten \ufffd"),
    ("zwei \ud83d\ud83d", "zwei \ufffd\ufffd"),
    ("ganz 😀 normal", "ganz 😀 normal"),
])
def test_a_lone_surrogate_replaces_that_character_not_the_message(body, expected):
    result = translate(webhook(messages=[text(body)]), now=NOW)
    [item] = result.events
    assert item.event.data.text == expected
    item.event.model_dump_json()  # encodable: would raise on a surrogate
    assert [r.reason for r in result.repaired] == (["bad_text"] if body != expected else [])


BAD_CHARACTERS = [  # (case, message fields, what the event must say): kept, cleaned, counted as bad_text
    ("NUL in the text", {"text": {"body": "Größe\x0042?"}}, ("text", "Größe\ufffd42?")),
    ("surrogate in an order's currency", {"type": "order", "order": {"product_items": [
        {"product_retailer_id": "S1", "quantity": 1, "currency": "E\ud800R"}]}}, ("currency", "E\ufffdR")),
    ("surrogate in an interactive reply kind", {"type": "interactive", "interactive": {"type": "x\udc00"}},
     ("interactive_type", "x\ufffd")),
    ("surrogate in a referral key", {"referral": {"source\ud83d_id": "ad-1", "source_type": "ad"}},
     ("referral", {"source\ufffd_id": "ad-1", "source_type": "ad"})),
    ("NUL in a referral value", {"referral": {"headline": "Sale\x00"}}, ("referral", {"headline": "Sale\ufffd"})),
    # Issue 6: the contract refuses every control character; a customer's message is repaired, never lost.
    ("bell and escape in the text", {"text": {"body": "Hallo\x07 \x1b[31mrot"}}, ("text", "Hallo\ufffd \ufffd[31mrot")),
    ("DEL and a C1 control in the text", {"text": {"body": "a\x7fb\x85c"}}, ("text", "a\ufffdb\ufffdc")),
    ("a control character in a caption", {"type": "image", "image": {"id": "m1", "caption": "Foto\x0b"}},
     ("text", "Foto\ufffd")),
]


@pytest.mark.parametrize(("case", "fields", "said"), BAD_CHARACTERS, ids=[c for c, _, _ in BAD_CHARACTERS])
def test_characters_no_consumer_can_store_are_replaced_and_the_message_kept(case, fields, said):
    """A lone surrogate cannot be encoded (the publish would fail: a 5xx) and PostgreSQL stores no NUL."""
    result = translate(webhook(messages=[{**text(), **fields}]), now=NOW)
    [item] = result.events
    key, value, headers = encode_event("demo", item.event, ingested_at=NOW)
    assert decode_event(key, value, headers).event == item.event
    where, expected = said
    data = item.event.data
    actual = data.text if where == "text" else data.referral if where == "referral" else data.details[where]
    assert actual == expected, case
    assert [(r.type, r.reason) for r in result.repaired] == [(item.type, "bad_text")]


@pytest.mark.parametrize(("number", "waba"), [("PN\x00-1", "WABA-1"), ("PN-1", "WA\x00BA"), ("PN-1", "WA\udfffBA")])
def test_routing_ids_never_carry_what_postgresql_cannot_compare(number, waba):
    """The ids are looked up in PostgreSQL: a NUL there is a database error (a 5xx), not a miss."""
    payload = webhook(statuses=[status()])
    payload["entry"][0]["id"] = waba
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number
    [item] = translate(payload, now=NOW).events
    for routing_id in (item.phone_number_id, item.waba_id, item.event.data.account_id):
        assert routing_id is None or ("\x00" not in routing_id and routing_id.encode())


@pytest.mark.parametrize(("where", "raw"), [("field", "messages\ud800"), ("message type", "te\udc00xt"),
                                            ("preference", "st\ud800op"), ("status", "rea\ud800d")])
def test_skip_labels_are_valid_utf8_so_metrics_can_still_be_scraped(where, raw):
    """prometheus_client encodes every label value on each scrape: one surrogate would break /metrics for good."""
    payload = webhook()
    change = payload["entry"][0]["changes"][0]
    if where == "field":
        change["field"] = raw
    elif where == "message type":
        change["value"]["messages"] = [{**text(), "type": raw}]
    elif where == "preference":
        change["field"] = "user_preferences"
        change["value"]["user_preferences"] = [{"wa_id": "4915112345678", "value": raw, "timestamp": 1772366400}]
    else:
        change["value"]["statuses"] = [status(raw)]
    result = translate(payload, now=NOW)
    assert result.skipped, where
    registry = CollectorRegistry()
    counter = Counter("skipped_total", "", ["field", "type", "reason"], registry=registry)
    for skipped in result.skipped:
        counter.labels(skipped.field, skipped.type, skipped.reason).inc()
    assert b"\\ufffd" in generate_latest(registry) or "\ufffd".encode() in generate_latest(registry)


@pytest.mark.parametrize(("raw", "expected", "repaired"), [
    ("1772366400", datetime(2026, 3, 1, 12, 0, tzinfo=UTC), False),
    (1772366400, datetime(2026, 3, 1, 12, 0, tzinfo=UTC), False),
    ("soon", NOW, True),
    ("", NOW, True),
    (None, NOW, True),
    ("0", NOW, True),
    ("99999999999999999999", NOW, True),
    ("253402300799", NOW, True),  # 9999-12-31: a broken clock, past the contract's range
    (str(int(NOW.timestamp()) + 2 * 86400), NOW, True),  # two days ahead of the time received
    (str(int(NOW.timestamp()) + 3600), datetime(2026, 11, 30, 13, 0, tzinfo=UTC), False),  # within the skew
    (True, NOW, True),
    ({"at": 1}, NOW, True),
])
def test_an_unreadable_timestamp_is_the_time_received_and_counted(raw, expected, repaired):
    result = translate(webhook(statuses=[status(timestamp=raw)]), now=NOW)
    [item] = result.events
    assert item.event.occurred_at == expected
    assert [r.reason for r in result.repaired] == (["bad_timestamp"] if repaired else [])


MALFORMED_SHAPES = [  # (case, value fields, events kept)
    ("messages [null]", {"messages": [None, text()]}, 1),
    ("messages a string", {"messages": "x", "statuses": [status()]}, 1),
    ("contacts ['x']", {"contacts": ["x"], "messages": [text()]}, 1),
    ("contacts a number", {"contacts": 7, "messages": [text()]}, 1),
    ("metadata a list", {"metadata": [], "messages": [text()]}, 1),
    ("text an array", {"messages": [{**text(), "text": ["hi"]}, text(wamid="wamid.2")]}, 1),
    ("id an object", {"messages": [{**text(), "id": {"x": 1}}, text(wamid="wamid.2")]}, 1),
    ("type a list", {"messages": [{**text(), "type": ["text"]}, text(wamid="wamid.2")]}, 1),
    ("status an int", {"statuses": [{**status(), "status": 3}, status(wamid="wamid.2")]}, 1),
    ("status a list", {"statuses": [{**status(), "status": ["read"]}, status(wamid="wamid.2")]}, 1),
    ("pricing a string", {"statuses": [{**status(), "pricing": "cheap"}]}, 1),
    ("errors a string", {"statuses": [{**status("failed"), "errors": "bad"}]}, 1),
    ("context a list", {"messages": [{**text(), "context": ["wamid.X"]}]}, 1),
    ("referral nested and an empty key", {"messages": [{**text(), "referral": {"a": {"b": 1}, "": "x", "source_type": "ad"}}]}, 1),
    ("reaction emoji a number", {"messages": [{"from": "4915112345678", "id": "wamid.R", "timestamp": "1",
                                                "type": "reaction", "reaction": {"emoji": 5}}]}, 1),
    ("profile name a dict", {"contacts": [{"wa_id": "4915112345678", "profile": {"name": {"x": 1}}}],
                             "messages": [text()]}, 1),
    ("user id with spaces", {"messages": [{**text(), "from_user_id": "not a bsuid"}]}, 1),
]


@pytest.mark.parametrize(("case", "value", "kept"), MALFORMED_SHAPES, ids=[c for c, _, _ in MALFORMED_SHAPES])
def test_a_payload_of_unexpected_shape_keeps_its_good_items_and_never_raises(case, value, kept):
    payload = webhook()
    payload["entry"][0]["changes"][0]["value"].update(value)
    result = translate(payload, now=NOW)
    assert len(result.events) == kept, (case, result.skipped)
    for item in result.events:
        item.event.model_dump_json()


@pytest.mark.parametrize("payload", [
    None, [], "x", 3, {"object": "page", "entry": []}, {"object": "whatsapp_business_account"},
    {"object": "whatsapp_business_account", "entry": "x"}, {"object": "whatsapp_business_account", "entry": [None, 1]},
    {"object": "whatsapp_business_account", "entry": [{"changes": "x"}]},
    {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": 1}, {"field": "messages", "value": "x"}]}]},
])
def test_payloads_with_nothing_to_read_are_counted_not_raised(payload):
    result = translate(payload, now=NOW)
    assert result.events == []
    assert result.skipped and all(s.reason in {"malformed", "unknown_object"} for s in result.skipped)


def test_an_echo_of_our_own_number_is_not_a_reply():
    result = translate(webhook(messages=[text(sender="15550001111"), text(wamid="wamid.2")]), now=NOW)
    assert [i.event.event_id for i in result.events] == ["wa:wamid.2"]
    assert [(s.type, s.reason) for s in result.skipped] == [("text", "echo")]


def test_a_very_long_wamid_gets_a_stable_id_within_the_contracts_limit():
    wamid = "wamid." + "A" * 200
    first = events_of(webhook(statuses=[status("read", wamid=wamid)]))[0]
    again = events_of(webhook(statuses=[status("read", wamid=wamid)]))[0]
    other = events_of(webhook(statuses=[status("delivered", wamid=wamid)]))[0]
    assert len(first.event_id) <= 128
    assert first.event_id == again.event_id != other.event_id
    assert first.data.message_id == wamid


def _routed(number: str | None, waba: str | None) -> Routed:
    [event] = events_of(webhook(statuses=[status()]))
    return Routed(event, number, waba, "messages", "delivered")


@pytest.mark.parametrize(("number", "waba", "tenant", "reason"), [
    ("PN-A", "W-B", "a", None),               # the number decides, not the WABA
    ("PN-X", "W-B", None, "unknown_number"),  # an unknown number is not rescued by its WABA
    (None, "W-B", "b", None),
    (None, "W-X", None, "unknown_account"),
    (None, None, None, "unknown_number"),
])
def test_events_go_to_the_owner_of_their_number_else_of_their_account(number, waba, tenant, reason):
    by_tenant, skipped = route([_routed(number, waba)], numbers={"PN-A": "a", "PN-X": None},
                               accounts={"W-B": "b", "W-X": None})
    assert list(by_tenant) == ([tenant] if tenant else [])
    assert [s.reason for s in skipped] == ([reason] if reason else [])
    assert all((s.field, s.type) == ("messages", "delivered") for s in skipped)


def test_an_event_a_consumer_could_not_read_back_is_counted_as_malformed_not_published():
    """The last line of defence for a field a parser forgot to clean: a skip, never a 5xx at publish time."""
    findings = Findings(NOW)
    unencodable = MessageInbound(event_id="wa:wamid.X", type="message.inbound", occurred_at=NOW,
                                 contact=Contact(wa_id="4915112345678"),
                                 # built past validation, as a parser's forgotten field would be
                                 data=InboundData.model_construct(type="image", message_id="wamid.X",
                                                                  details={"mime_type": "\ud800"}))
    guarded(findings, "messages", "image", lambda: findings.emit(
        unencodable, field="messages", type="image", phone_number_id="PN-1", waba_id=None))
    assert findings.events == []
    assert [(s.field, s.type, s.reason) for s in findings.skipped] == [("messages", "image", "malformed")]


@pytest.mark.parametrize(("expiration", "expected", "repaired"), [
    ("2026-12-24T00:00:00+0000", datetime(2026, 12, 24, tzinfo=UTC), False),
    ("9999-12-31T00:00:00+0000", None, True),  # past the contract's range: read as "until lifted", counted
    ("0001-01-01T00:00:00+0100", None, True),
])
def test_a_restriction_expiry_outside_the_contracts_range_keeps_the_restriction(expiration, expected, repaired):
    """Issue 6: the contract refuses times outside 2000 … 2100; the account update itself must not be lost."""
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "WABA-1", "time": 1772366400, "changes": [
        {"field": "account_update", "value": {"event": "ACCOUNT_RESTRICTION", "restriction_info": [
            {"restriction_type": "RESTRICTED_ADD_PHONE_NUMBER_ACTION", "expiration": expiration}]}}]}]}
    result = translate(payload, now=NOW)
    [item] = result.events
    [restriction] = item.event.data.restrictions
    assert (restriction.type, restriction.expires_at) == ("RESTRICTED_ADD_PHONE_NUMBER_ACTION", expected)
    assert [r.reason for r in result.repaired] == (["bad_timestamp"] if repaired else [])
