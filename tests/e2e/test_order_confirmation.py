"""R-T2 / R-T1 end to end: HTTP in → exactly one message at the Cloud API simulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.events import contact_created, new_id, new_order, new_phone, payment
from tests.support.stack import TestStack, poll


def messages_to(stack: TestStack, phone: str) -> list[dict[str, Any]]:
    return [m for m in stack.sim_messages() if m["to"].lstrip("+") == phone.lstrip("+")]


def decisions(stack: TestStack, contact: str) -> list[dict[str, Any]]:
    resp = stack.http.get(stack.url("trigger-engine", f"/v1/contacts/{contact}/decisions"), headers=stack.auth)
    resp.raise_for_status()
    return resp.json()["decisions"]


def test_payment_sends_one_order_confirmation_with_number_and_three_items(full_stack: TestStack) -> None:
    phone, order = new_phone(), new_order()
    resp = full_stack.post_events(payment(order_id=order, phone=phone, items=5))
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"accepted": 1}

    [message] = poll(lambda: messages_to(full_stack, phone), timeout=20, what="the order confirmation")
    assert message["type"] == "template"
    assert message["template"]["name"] == "order_confirmation"
    params = message["template"]["parameters"]
    assert params[0] == order
    items_line = params[1]
    shown = items_line.count("×")
    assert 1 <= shown <= 3, items_line  # R-T2.2: at most three main items
    assert items_line.endswith(f"+{5 - shown} more"), items_line
    assert order in message["text"]
    assert len(message["text"]) < 210, message["text"]  # R-T2.2
    assert message["biz_opaque_callback_data"].endswith(f"order_confirmation|{order}")


def test_new_contact_gets_a_personal_welcome_and_a_nameless_one_gets_the_generic_greeting(
        full_stack: TestStack) -> None:
    named, nameless = new_phone(), new_phone()
    resp = full_stack.post_events({"events": [contact_created(phone=named, name="Lena Maier"),
                                              contact_created(phone=nameless)]})
    assert resp.status_code == 202, resp.text

    [greeting] = poll(lambda: messages_to(full_stack, named), timeout=30, what="the named welcome")
    assert greeting["template"]["name"] == "welcome"
    assert greeting["template"]["parameters"][0] == "Lena"
    assert "WELCOME10-" in greeting["text"]
    [generic] = poll(lambda: messages_to(full_stack, nameless), timeout=30, what="the generic welcome")
    assert generic["template"]["name"] == "welcome_generic"  # R-T1.4: never a blank name
    assert "{{" not in generic["text"]


def test_duplicate_payments_send_exactly_one_confirmation(full_stack: TestStack) -> None:
    phone, order, customer = new_phone(), new_order(), new_id("cust")
    first = payment(order_id=order, phone=phone, external_id=customer)
    for _ in range(5):  # the gateway retries with the same event_id
        assert full_stack.post_events(first).status_code == 202
    later = datetime.fromisoformat(first["occurred_at"].replace("Z", "+00:00")) + timedelta(minutes=10)
    # the same order reported again under a new event_id, ten minutes of event time later
    assert full_stack.post_events(payment(order_id=order, phone=phone, external_id=customer,
                                          occurred_at=later)).status_code == 202

    logged = poll(lambda: (d := decisions(full_stack, customer)) and len(d) >= 6 and d, timeout=20,
                  what="six decisions for the contact")
    outcomes = sorted((d["outcome"], (d["reason"] or "").split(":")[0]) for d in logged)
    assert outcomes == [("send", "")] + [("suppressed", "duplicate")] * 5
    poll(lambda: messages_to(full_stack, phone), timeout=20, what="the confirmation")
    # the sender's log is the last place a second message could come from: it holds one row, sent
    sent = poll(lambda: [m for m in full_stack.http.get(full_stack.url("sender", "/v1/messages"),
                                                         params={"contact": customer},
                                                         headers=full_stack.auth).json()["messages"]
                         if m["state"] == "sent"], timeout=20, what="the send log entry")
    assert len(sent) == 1
    assert len(messages_to(full_stack, phone)) == 1


def test_a_duplicate_arriving_much_later_still_sends_nothing(full_stack: TestStack) -> None:
    phone, order = new_phone(), new_order()
    original = payment(order_id=order, phone=phone, occurred_at=datetime.now(UTC) - timedelta(hours=2))
    assert full_stack.post_events(original).status_code == 202
    poll(lambda: messages_to(full_stack, phone), timeout=20, what="the confirmation")
    customer_key = phone
    # hours later, a new event_id for the same order: the idempotency key still holds
    assert full_stack.post_events(payment(order_id=order, phone=phone)).status_code == 202
    logged = poll(lambda: (d := decisions(full_stack, customer_key)) and len(d) >= 2 and d, timeout=20,
                  what="the duplicate's decision")
    assert [d["outcome"] for d in logged] == ["suppressed", "send"]
    assert len(messages_to(full_stack, phone)) == 1


def test_an_oversized_correlation_id_does_not_cost_the_customer_their_confirmation(full_stack: TestStack) -> None:
    # Commands allow 128-character correlation ids; a longer header used to poison the send command.
    phone, order = new_phone(), new_order()
    resp = full_stack.post_events(payment(order_id=order, phone=phone), headers={"X-Correlation-ID": "c" * 500})
    assert resp.status_code == 202
    [message] = poll(lambda: messages_to(full_stack, phone), timeout=20, what="the confirmation")
    assert message["template"]["parameters"][0] == order
