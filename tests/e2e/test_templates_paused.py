"""Issue 7 acceptance, end to end: the bootstrap account's templates come from the simulator's management
endpoint; a template paused through the simulator's status webhook makes the next message using it fail with
"template … paused" in the send log (never sent); approved again, the next one is sent (R-S2)."""

from __future__ import annotations

from typing import Any

from tests.support.events import new_order, new_phone, payment
from tests.support.stack import TestStack, poll

WABA = "200000000000001"  # the bootstrap number's WABA at the simulator (SCRM_BOOTSTRAP_WABA_ID)
NAME, LANGUAGE = "order_confirmation", "en_US"


def _template(stack: TestStack) -> dict[str, Any] | None:
    resp = stack.http.get(stack.url("sender", "/v1/templates"), params={"name": NAME, "language": LANGUAGE},
                          headers=stack.auth)
    resp.raise_for_status()
    found = resp.json()["templates"]
    return found[0] if found else None


def _set_status(stack: TestStack, status: str) -> None:
    resp = stack.http.post(stack.url("simulator", f"/_sim/templates/{WABA}/{NAME}/status"),
                           json={"status": status, "language": LANGUAGE, "reason": "LOW_QUALITY"})
    resp.raise_for_status()
    poll(lambda: (t := _template(stack)) is not None and t["status"] == status or None, timeout=30,
         what=f"the sender to learn {NAME} ({LANGUAGE}) is {status}")


def _logged(stack: TestStack, phone: str) -> list[dict[str, Any]]:
    resp = stack.http.get(stack.url("sender", "/v1/messages"), params={"contact": phone}, headers=stack.auth)
    resp.raise_for_status()
    return resp.json()["messages"]


def _sent_to(stack: TestStack, phone: str) -> list[dict[str, Any]]:
    return [m for m in stack.sim_messages() if m["to"].lstrip("+") == phone.lstrip("+")]


def test_a_paused_template_fails_the_next_message_with_the_reason_and_resumed_it_is_sent(
        full_stack: TestStack) -> None:
    # synced from the simulator at start: Meta's id is known (a template only seeded from the package has none)
    synced = poll(lambda: (t := _template(full_stack)) is not None and t["template_id"] and t, timeout=60,
                  what="the bootstrap account's templates synced from the simulator")
    assert (synced["status"], synced["category"], synced["waba_id"]) == ("APPROVED", "utility", WABA)
    try:
        _set_status(full_stack, "PAUSED")
        phone = new_phone()
        assert full_stack.post_events(payment(order_id=new_order(), phone=phone)).status_code == 202
        [failed] = poll(lambda: [m for m in _logged(full_stack, phone) if m["state"] == "failed"] or None,
                        timeout=30, what="the confirmation failed for the paused template")
        assert failed["error_reason"] == f"template {NAME} ({LANGUAGE}) is paused"
        assert _sent_to(full_stack, phone) == []
    finally:
        _set_status(full_stack, "APPROVED")
    phone = new_phone()
    assert full_stack.post_events(payment(order_id=new_order(), phone=phone)).status_code == 202
    [sent] = poll(lambda: _sent_to(full_stack, phone) or None, timeout=30, what="the confirmation once resumed")
    assert sent["template"]["name"] == NAME
