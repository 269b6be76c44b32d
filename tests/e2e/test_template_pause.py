"""Issue 7 / R-S2: a template Meta pauses (the simulator's `message_template_status_update` webhook) is never
sent: the next message using it fails with "template … paused" in the send log and in the contact's decision
story; once Meta approves it again, the next payment's confirmation is sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backend import Backend
from tests.support.events import new_id, new_order, new_phone, payment
from tests.support.stack import TestStack, poll, start_stack

BOOTSTRAP_WABA = "200000000000001"
TEMPLATE = "order_confirmation"
LANGUAGE = "en_US"  # the template language of the payments' en-US contacts


@pytest.fixture(scope="module")
def stack(backend: Backend, work_dir: Path) -> Iterator[TestStack]:
    started = start_stack(work_dir, backend, processes=("ingest", "trigger-engine", "sender", "simulator"),
                          record_responses=True)
    yield started
    started.close()


def _status(stack: TestStack) -> str | None:
    resp = stack.http.get(stack.url("sender", "/v1/templates"), params={"name": TEMPLATE, "language": LANGUAGE},
                          headers=stack.auth)
    assert resp.status_code == 200, resp.text
    found = resp.json()["templates"]
    return found[0]["status"] if found else None


def _set_status(stack: TestStack, status: str) -> None:
    resp = stack.http.post(stack.url("simulator", f"/_sim/templates/{BOOTSTRAP_WABA}/{TEMPLATE}/status"),
                           json={"status": status, "language": LANGUAGE, "reason": "e2e"})
    assert resp.status_code == 200, resp.text
    poll(lambda: _status(stack) == status, timeout=30, what=f"GET /v1/templates showing {status}")


def _story(stack: TestStack, contact: str) -> list[dict[str, Any]]:
    resp = stack.http.get(stack.url("trigger-engine", f"/v1/contacts/{contact}/decisions"), headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["decisions"])


def _pay(stack: TestStack) -> tuple[str, str]:
    contact, order = new_id("cust"), new_order()
    resp = stack.post_events(payment(order_id=order, phone=new_phone(), external_id=contact))
    assert resp.status_code == 202, resp.text
    return contact, order


def _message(stack: TestStack, contact: str) -> dict[str, Any]:
    """The contact's confirmation in the sender's log, once it is final (sent or failed)."""
    send = poll(lambda: [d for d in _story(stack, contact) if d["outcome"] == "send"], timeout=30,
                what="the decision to send")[0]

    def final() -> dict[str, Any] | None:
        resp = stack.http.get(stack.url("sender", f"/v1/messages/{send['idempotency_key']}"), headers=stack.auth)
        return resp.json() if resp.status_code == 200 and resp.json()["state"] in ("sent", "failed") else None

    return poll(final, timeout=30, what="the confirmation sent or failed")


def test_a_paused_template_fails_the_next_message_with_its_reason_and_resumed_it_is_sent(stack: TestStack) -> None:
    poll(lambda: _status(stack) == "APPROVED", timeout=30, what="the bootstrap templates, approved")
    _set_status(stack, "PAUSED")

    contact, _order = _pay(stack)
    failed = _message(stack, contact)
    assert failed["state"] == "failed", failed
    assert "paused" in (failed["error_reason"] or "") and TEMPLATE in failed["error_reason"], failed
    try:
        told = poll(lambda: [d for d in _story(stack, contact) if "paused" in (d["reason"] or "")], timeout=30,
                    what="the failure in the decision story")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the story: {_story(stack, contact)}") from None
    assert TEMPLATE in told[0]["reason"], told
    assert not [m for m in stack.sim_messages() if failed["to_phone"].lstrip("+") == m["to"].lstrip("+")]

    _set_status(stack, "APPROVED")
    contact, order = _pay(stack)
    sent = _message(stack, contact)
    assert sent["state"] == "sent", sent
    [message] = [m for m in stack.sim_messages() if m["wamid"] == sent["wamid"]]
    assert (message["template"]["name"], message["template"]["parameters"][0]) == (TEMPLATE, order)


def test_no_access_token_or_key_in_any_log_metric_or_answer(stack: TestStack) -> None:
    found = stack.sweep({"a simulator access token": "sim-token", "the bootstrap key": stack.api_key,
                         "SCRM_SECRETS_KEY": stack.stack.secrets["SCRM_SECRETS_KEY"]})
    assert not found, "secrets found:\n" + "\n".join(found)
