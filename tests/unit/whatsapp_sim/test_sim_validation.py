"""Request validation: every Meta error code the simulator raises, and what accepted sends carry."""

from __future__ import annotations

from typing import Any

import pytest

from whatsapp_sim.domain.errors import MetaError, http_status_for, meta_error
from whatsapp_sim.domain.templates import TemplateCatalog
from whatsapp_sim.domain.validation import AcceptedMessage, ReadReceipt, normalize_recipient, validate_request

CATALOG = TemplateCatalog.from_json("""[
 {"name": "order_update", "language": "en_US", "category": "utility", "status": "APPROVED",
  "body": "Order {{1}} for {{2}} shipped"},
 {"name": "hello", "language": "en_US", "category": "marketing", "status": "APPROVED", "body": "Hello!"},
 {"name": "paused_t", "language": "en_US", "category": "marketing", "status": "PAUSED", "body": "Hi {{1}}"},
 {"name": "disabled_t", "language": "en_US", "category": "marketing", "status": "DISABLED", "body": "Hi {{1}}"},
 {"name": "pending_t", "language": "en_US", "category": "marketing", "status": "PENDING", "body": "Hi"},
 {"name": "named_t", "language": "en_US", "category": "marketing", "status": "APPROVED",
  "body": "Hi {{first_name}}, use {{code}}"},
 {"name": "rich_t", "language": "de", "category": "utility", "status": "APPROVED", "body": "Paket {{1}}",
  "header": {"format": "IMAGE"},
  "buttons": [{"type": "URL", "text": "Track", "url": "https://ex.com/t/{{1}}"},
              {"type": "QUICK_REPLY", "text": "Stop"}]}
]""")
BUSINESS = "15550001111"


def envelope(**fields: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "+49 151 1234-5678", **fields}


def text(body: str = "hi", **extra: Any) -> dict[str, Any]:
    return envelope(type="text", text={"body": body, **extra})


def template(name: str, language: str = "en_US", components: list[Any] | None = None) -> dict[str, Any]:
    tpl: dict[str, Any] = {"name": name, "language": {"code": language, "policy": "deterministic"}}
    if components is not None:
        tpl["components"] = components
    return envelope(type="template", template=tpl)


def body_params(*values: str) -> list[dict[str, Any]]:
    return [{"type": "body", "parameters": [{"type": "text", "text": v} for v in values]}]


def rich(components: list[Any]) -> dict[str, Any]:
    return template("rich_t", "de", components)


HEADER = {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://ex.com/p.png"}}]}
URL_BUTTON = {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "X1"}]}

REJECTED: list[tuple[str, Any, int]] = [
    ("body not an object", ["nope"], 100),
    ("messaging_product missing", {"to": "+4915112345678", "type": "text", "text": {"body": "x"}}, 100),
    ("messaging_product wrong", {**text(), "messaging_product": "sms"}, 100),
    ("unknown top-level field", {**text(), "priority": "high"}, 100),
    ("recipient_type group", {**text(), "recipient_type": "group"}, 100),
    ("to missing", {"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, 131008),
    ("to empty", {**text(), "to": ""}, 131008),
    ("to letters", {**text(), "to": "+49abc1234567"}, 131009),
    ("to too short", {**text(), "to": "+1 234 567"}, 131009),
    ("to too long", {**text(), "to": "+1234567890123456"}, 131009),
    ("to not a string", {**text(), "to": 4915112345678}, 131009),
    ("to is the business number", {**text(), "to": "+1 555 000 1111"}, 131021),
    ("unknown type", envelope(type="fax", fax={}), 100),
    ("type a list", envelope(type=["text"], text={"body": "x"}), 100),  # was a TypeError: a plain-text 500
    ("type an object", envelope(type={"text": 1}, text={"body": "x"}), 100),
    ("type body missing", envelope(type="text"), 131008),
    ("two type bodies", {**text(), "image": {"id": "1"}}, 100),
    ("text body missing", envelope(type="text", text={"preview_url": True}), 131008),
    ("text body too long", text("x" * 4097), 100),
    ("text unknown key", text("hi", bold=True), 100),
    ("text preview_url not bool", text("hi", preview_url="yes"), 100),
    ("image without id or link", envelope(type="image", image={"caption": "c"}), 131008),
    ("image with id and link", envelope(type="image", image={"id": "1", "link": "https://ex.com/a.png"}), 100),
    ("document caption too long", envelope(type="document", document={"id": "1", "caption": "c" * 1025}), 100),
    ("image link not http", envelope(type="image", image={"link": "ftp://ex.com/a.png"}), 100),
    ("biz_opaque_callback_data too long", {**text(), "biz_opaque_callback_data": "x" * 513}, 100),
    ("interactive with 4 buttons", envelope(type="interactive", interactive={
        "type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": str(i), "title": f"B{i}"}} for i in range(4)]}}), 100),
    ("interactive title too long", envelope(type="interactive", interactive={
        "type": "button", "body": {"text": "Pick"}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": "1", "title": "x" * 21}}]}}), 100),
    ("interactive type an object", envelope(type="interactive", interactive={
        "type": {"button": 1}, "body": {"text": "Pick"}, "action": {}}), 100),
    ("template name missing", envelope(type="template", template={"language": {"code": "en_US"}}), 131008),
    ("template language missing", envelope(type="template", template={"name": "hello"}), 131008),
    ("template unknown", template("nope"), 132001),
    ("template other language", template("order_update", "en", body_params("1", "Ada")), 132001),
    ("template not approved yet", template("pending_t"), 132001),
    ("template paused", template("paused_t", components=body_params("Ada")), 132015),
    ("template disabled", template("disabled_t", components=body_params("Ada")), 132016),
    ("template too few params", template("order_update", components=body_params("1")), 132000),
    ("template too many params", template("hello", components=body_params("x")), 132000),
    ("template params missing", template("order_update"), 132000),
    ("template bad policy", {**template("hello"), "template": {"name": "hello", "language": {
        "code": "en_US", "policy": "fallback"}}}, 100),
    ("template mixed named and positional", template("named_t", components=[{"type": "body", "parameters": [
        {"type": "text", "parameter_name": "first_name", "text": "Ada"}, {"type": "text", "text": "X"}]}]), 100),
    ("named params for positional template", template("order_update", components=[{"type": "body", "parameters": [
        {"type": "text", "parameter_name": "a", "text": "1"}, {"type": "text", "parameter_name": "b", "text": "2"}]}]),
     132012),
    ("positional params for named template", template("named_t", components=body_params("Ada", "X")), 132012),
    ("named params with wrong names", template("named_t", components=[{"type": "body", "parameters": [
        {"type": "text", "parameter_name": "first_name", "text": "Ada"},
        {"type": "text", "parameter_name": "coupon", "text": "X"}]}]), 132000),
    ("param with a newline", template("order_update", components=body_params("1", "Ada\nLovelace")), 132018),
    ("param with empty text", template("order_update", components=body_params("1", "")), 131008),
    ("rendered body too long", template("order_update", components=body_params("1", "x" * 1100)), 132005),
    ("unknown component type", template("hello", components=[{"type": "sidebar"}]), 100),
    ("media header missing", rich([*body_params("P1"), URL_BUTTON]), 132012),
    ("url button parameter missing", rich([HEADER, *body_params("P1")]), 131008),
    ("button index does not exist", rich([HEADER, *body_params("P1"), URL_BUTTON,
                                          {"type": "button", "sub_type": "url", "index": 5}]), 131009),
    ("header for a template without one", template("hello", components=[
        {"type": "header", "parameters": [{"type": "text", "text": "x"}]}]), 132000),
    ("read receipt with other status", {"messaging_product": "whatsapp", "status": "delivered",
                                        "message_id": "wamid.X"}, 100),
    ("read receipt for unknown wamid", {"messaging_product": "whatsapp", "status": "read",
                                        "message_id": "wamid.unknown"}, 131009),
]


@pytest.mark.parametrize(("case", "body", "code"), REJECTED, ids=[c[0] for c in REJECTED])
def test_rejected(case: str, body: Any, code: int) -> None:
    result = validate_request(body, CATALOG, business_number=BUSINESS)
    assert isinstance(result, MetaError), f"{case}: accepted"
    assert result.code == code, f"{case}: {result}"
    assert result.http_status == http_status_for(code)


def test_unknown_template_error_is_metas_wording() -> None:
    result = validate_request(template("welcome_x"), CATALOG)
    assert isinstance(result, MetaError)
    assert (result.http_status, result.message) == (404, "(#132001) Template name does not exist in the translation")
    assert result.details == "template name (welcome_x) does not exist in en_US"
    count = validate_request(template("order_update", components=body_params("1")), CATALOG)
    assert isinstance(count, MetaError)
    assert count.details == "body: number of localizable_params (1) does not match the expected number of params (2)"


def test_error_body_is_exactly_metas_shape() -> None:
    assert meta_error(131056).body("AbC") == {"error": {
        "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "type": "OAuthException", "code": 131056,
        "error_data": {"messaging_product": "whatsapp", "details": meta_error(131056).details},
        "fbtrace_id": "AbC"}}


@pytest.mark.parametrize(("code", "status"), [
    (100, 400), (190, 401), (0, 401), (10, 403), (200, 403), (368, 403), (132001, 404), (131000, 500),
    (131016, 500), (2, 503), (133004, 503), (130429, 400), (131056, 400), (131047, 400)])
def test_http_status_per_code(code: int, status: int) -> None:
    assert http_status_for(code) == status


def test_text_is_accepted_with_the_canonical_wa_id() -> None:
    result = validate_request(text("hello", preview_url=True), CATALOG, business_number=BUSINESS)
    assert isinstance(result, AcceptedMessage)
    assert (result.to, result.wa_id, result.type, result.text, result.free_form) == (
        "+49 151 1234-5678", "4915112345678", "text", "hello", True)


def test_type_defaults_to_text() -> None:
    body = {"messaging_product": "whatsapp", "to": "+4915112345678", "text": {"body": "x"}}
    assert isinstance(validate_request(body, CATALOG), AcceptedMessage)


def test_template_is_rendered_with_its_parameters() -> None:
    body = {**template("order_update", components=body_params("#42", "Ada")), "biz_opaque_callback_data": "k1"}
    result = validate_request(body, CATALOG)
    assert isinstance(result, AcceptedMessage) and result.template is not None
    assert result.text == "Order #42 for Ada shipped"
    assert result.template.parameters == ["#42", "Ada"]
    assert (result.template.category, result.free_form) == ("utility", False)
    assert result.biz_opaque_callback_data == "k1"


def test_named_template_and_currency_parameter() -> None:
    result = validate_request(template("named_t", components=[{"type": "body", "parameters": [
        {"type": "text", "parameter_name": "code", "text": "SAVE10"},
        {"type": "currency", "parameter_name": "first_name",
         "currency": {"fallback_value": "Ada", "code": "EUR", "amount_1000": 1}}]}]), CATALOG)
    assert isinstance(result, AcceptedMessage) and result.template is not None
    assert result.text == "Hi Ada, use SAVE10"
    assert result.template.parameters == {"code": "SAVE10", "first_name": "Ada"}


def test_template_with_media_header_and_buttons() -> None:
    quick = {"type": "button", "sub_type": "quick_reply", "index": 1,
             "parameters": [{"type": "payload", "payload": "STOP_1"}]}
    result = validate_request(rich([HEADER, *body_params("P1"), URL_BUTTON, quick]), CATALOG)
    assert isinstance(result, AcceptedMessage) and result.template is not None
    assert result.template.header_parameters == ["https://ex.com/p.png"]
    assert result.template.button_parameters == {"0": "X1", "1": "STOP_1"}


def test_template_without_variables_needs_no_components() -> None:
    result = validate_request(template("hello"), CATALOG)
    assert isinstance(result, AcceptedMessage) and result.text == "Hello!"


@pytest.mark.parametrize("body", [
    envelope(type="image", image={"id": "123", "caption": "c"}),
    envelope(type="document", document={"link": "https://ex.com/a.pdf", "filename": "a.pdf"}),
    envelope(type="interactive", interactive={"type": "button", "body": {"text": "Pick"}, "action": {
        "buttons": [{"type": "reply", "reply": {"id": "a", "title": "Yes"}}]}}),
    envelope(type="reaction", reaction={"message_id": "wamid.X", "emoji": "👍"}),
    {**text(), "context": {"message_id": "wamid.Y"}},
])
def test_other_types_are_accepted(body: dict[str, Any]) -> None:
    assert isinstance(validate_request(body, CATALOG), AcceptedMessage)


def test_read_receipt_for_a_received_message() -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN",
            "typing_indicator": {"type": "text"}}
    result = validate_request(body, CATALOG, known_inbound=lambda wamid: wamid == "wamid.IN")
    assert result == ReadReceipt(message_id="wamid.IN", typing_indicator=True)


@pytest.mark.parametrize(("raw", "digits"), [
    ("+1 (650) 555-1234", "16505551234"), ("4915112345678", "4915112345678"), ("+12345678", "12345678"),
    ("+1234567", None), ("+49 151 12x45678", None), ("", None)])
def test_normalize_recipient(raw: str, digits: str | None) -> None:
    assert normalize_recipient(raw) == digits
