"""One person, two numbers: WhatsApp answers from `+521…` for a Mexican customer the shop stores as `+52…`.

Issue 5 acceptance: the reply (a photo with a caption) shows up as that contact's reply in the segmenter
and in reporting, and the read receipt of the confirmation is counted — on the real stack, with the
webhooks signed as Meta signs them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.backend import Backend
from tests.support.events import new_order, payment, sign
from tests.support.stack import TestStack, poll, start_stack

PHONE_NUMBER_ID = "100000000000001"  # the bootstrap account


@pytest.fixture(scope="module")
def quiet_stack(backend: Backend, work_dir: Path) -> Iterator[TestStack]:
    """Its own stack: the simulator reads and replies nothing itself, so every count here is ours."""
    stack = start_stack(work_dir, backend, env={"SCRM_SIMULATOR_P_READ": "0", "SCRM_SIMULATOR_P_REPLY": "0",
                                                 "SCRM_DEMO": "0"})
    yield stack
    stack.close()


def _webhook(value: dict[str, Any]) -> bytes:
    body = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_NUMBER_ID},
            **value}}]}]}
    return json.dumps(body).encode()


def _post_webhook(stack: TestStack, raw: bytes) -> None:
    resp = stack.http.post(stack.url("ingest", "/v1/webhooks/whatsapp"), content=raw,
                           headers={"X-Hub-Signature-256": sign(stack.app_secret, raw),
                                    "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text


def _flow_counts(stack: TestStack, flow: str) -> dict[str, Any]:
    resp = stack.http.get(stack.url("reporting", "/v1/reports/overview"), headers=stack.auth)
    resp.raise_for_status()
    return next((f for f in resp.json()["flows"] if f["flow"] == flow), {})


def test_a_reply_from_the_521_wa_id_is_the_52_contacts_reply_and_its_read_receipt_counts(
        quiet_stack: TestStack) -> None:
    stack = quiet_stack
    shop_phone, wa_id = "+525512345678", "5215512345678"
    customer = f"cust-mx-{uuid.uuid4().hex[:6]}"
    order = new_order()
    resp = stack.post_events(payment(order_id=order, phone=shop_phone, external_id=customer, name="Lucía"))
    assert resp.status_code == 202, resp.text

    sent = poll(lambda: [m for m in stack.sim_messages() if m["to"].lstrip("+") in (shop_phone[1:], wa_id)],
                timeout=60, what="the order confirmation at the simulator")
    wamid = sent[0]["wamid"]
    poll(lambda: _flow_counts(stack, "order_confirmation").get("delivered") == 1, timeout=60,
         what="the confirmation counted as delivered")

    now = int(datetime.now(UTC).timestamp())
    _post_webhook(stack, _webhook({"statuses": [
        {"id": wamid, "status": "read", "timestamp": str(now), "recipient_id": wa_id}]}))
    _post_webhook(stack, _webhook({
        "contacts": [{"profile": {"name": "🦄 Lucky"}, "wa_id": wa_id}],
        "messages": [{"context": {"from": "15550001111", "id": wamid}, "from": wa_id,
                      "id": "wamid." + uuid.uuid4().hex, "timestamp": str(now + 5), "type": "image",
                      "image": {"caption": "Ist der Sneaker noch in 42 da?", "mime_type": "image/jpeg",
                                "sha256": "c2hh", "id": "1479537139650973"}}]}))

    counts = poll(lambda: (c := _flow_counts(stack, "order_confirmation")).get("replied") == 1
                  and c.get("read") == 1 and c, timeout=60, what="the reply and the read receipt in reporting")
    assert counts["sent"] == 1 and counts["delivered"] == 1

    def contact() -> dict[str, Any] | None:
        r = stack.http.get(stack.url("segmenter", f"/v1/contacts/{customer}"), headers=stack.auth)
        body = r.json() if r.status_code == 200 else None
        return body if body and body["activity"]["tier"] == "high" else None

    seen = poll(contact, timeout=60, what="the contact turning activity:high from its reply")
    assert "read_no_reply" not in seen["tags"]
    assert seen["contact"]["name"] == "Lucía"  # the shop's name, not the WhatsApp profile name
    assert seen["features"]["inbound_messages"] == 1

    # The same person is found by the number WhatsApp uses for them.
    by_wa = stack.http.get(stack.url("segmenter", f"/v1/contacts/+{wa_id}"), headers=stack.auth)
    assert by_wa.status_code == 200, by_wa.text
    assert by_wa.json()["contact"]["external_id"] == customer
