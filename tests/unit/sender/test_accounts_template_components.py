"""Template sends carry header and button parameters as Cloud API components (CLOUD-API.md §2.4).

(Kept with the accounts tests: issue 7 item 2 renders them; the template catalog is checked elsewhere.)"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from scrm_common.contracts.commands import SendMessage, TemplateButton, TemplateHeader, TemplateMessage
from sender.adapters.cloud_api import message_body, template_components

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("header", "parameter"), [
    (TemplateHeader(type="text", text="Ada"), {"type": "text", "text": "Ada"}),
    (TemplateHeader(type="image", link="https://ex.com/h.png"),
     {"type": "image", "image": {"link": "https://ex.com/h.png"}}),
    (TemplateHeader(type="video", link="https://ex.com/v.mp4"),
     {"type": "video", "video": {"link": "https://ex.com/v.mp4"}}),
    (TemplateHeader(type="document", link="https://ex.com/i.pdf", filename="invoice-42.pdf"),
     {"type": "document", "document": {"link": "https://ex.com/i.pdf", "filename": "invoice-42.pdf"}}),
    (TemplateHeader(type="document", link="https://ex.com/i.pdf"),
     {"type": "document", "document": {"link": "https://ex.com/i.pdf"}}),
])
def test_each_header_kind(header: TemplateHeader, parameter: dict[str, Any]) -> None:
    assert template_components(TemplateMessage(name="t", language="en", header=header)) == [
        {"type": "header", "parameters": [parameter]}]


def test_header_body_then_buttons_by_index_with_each_sub_types_parameter() -> None:
    template = TemplateMessage(
        name="order_update", language="en_US", parameters=["Ada", "#1234"],
        header=TemplateHeader(type="image", link="https://ex.com/h.png"),
        buttons=[TemplateButton(index=2, sub_type="copy_code", parameter="SAVE10"),
                 TemplateButton(index=0, sub_type="url", parameter="ORDER-1234"),
                 TemplateButton(index=1, sub_type="quick_reply", parameter="CANCEL_1234")])
    assert template_components(template) == [
        {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://ex.com/h.png"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "#1234"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "ORDER-1234"}]},
        {"type": "button", "sub_type": "quick_reply", "index": "1",
         "parameters": [{"type": "payload", "payload": "CANCEL_1234"}]},
        {"type": "button", "sub_type": "copy_code", "index": "2",
         "parameters": [{"type": "coupon_code", "coupon_code": "SAVE10"}]},
    ]


def _command(template: TemplateMessage) -> SendMessage:
    return SendMessage(idempotency_key="k1", tenant="t", account_id="1", flow="f", category="utility",
                       contact_key="c", to="+4915112345678", template=template, event_id="e", event_occurred_at=AT,
                       decided_at=AT)


def test_a_template_without_variables_sends_no_components() -> None:
    body = message_body(_command(TemplateMessage(name="hello", language="en")))
    assert body["template"] == {"name": "hello", "language": {"code": "en", "policy": "deterministic"}}


def test_the_send_body_carries_the_components() -> None:
    template = TemplateMessage(name="cart", language="de", parameters=["Ana"],
                               buttons=[TemplateButton(index=0, sub_type="url", parameter="r/abc")])
    body = message_body(_command(template))
    assert body["type"] == "template" and body["biz_opaque_callback_data"] == "k1"
    assert body["template"]["components"] == template_components(template)
    assert [c["type"] for c in body["template"]["components"]] == ["body", "button"]
