"""Issue 7: flow settings are data that governs the NEXT decision on every replica, without a restart; bad input
anywhere gets a precise 422 and changes nothing.

The stack runs two trigger-engine processes in one consumer group (each takes some partitions of the event log).
A change is checked by posting payments right after `PUT /v1/flows/order_confirmation` returned, one at a time,
until both replicas have decided at least one of them: every one must already follow the new settings. Both
replicas are warmed up first (each has decided with the old settings), so a replica serving settings it cached
before the change would be caught.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.backend import Backend
from tests.support.events import new_order, new_phone, payment
from tests.support.stack import TestStack, poll, start_stack

FLOW = "order_confirmation"
REPLICAS = ("trigger-engine", "trigger-engine-2")
MAX_PAYMENTS = 40  # per phase: enough for both replicas to take one (each holds half of the partitions)
BOOTSTRAP_WABA = "200000000000001"
SIM_TOKENS = "sim-token"


@pytest.fixture(scope="module")
def stack(backend: Backend, work_dir: Path) -> Iterator[TestStack]:
    started = start_stack(work_dir, backend, processes=("ingest", "trigger-engine", "sender", "simulator"),
                          record_responses=True)
    try:
        started.start_replica("trigger-engine")
    except BaseException:
        started.close()
        raise
    yield started
    started.close()


def _flow(stack: TestStack) -> dict[str, Any]:
    resp = stack.http.get(stack.url("trigger-engine", f"/v1/flows/{FLOW}"), headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _put(stack: TestStack, settings: dict[str, Any], replica: str = "trigger-engine") -> dict[str, Any]:
    resp = stack.http.put(stack.url(replica, f"/v1/flows/{FLOW}"), json=settings, headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _decided(stack: TestStack, replica: str) -> float:
    """How many order-confirmation decisions the replica took (its /metrics)."""
    text = stack.metrics(replica)
    return sum(float(m.group(1)) for m in re.finditer(
        r'^scrm_trigger_engine_decisions_total\{[^}]*flow="order_confirmation"[^}]*\} (\S+)$', text, re.M))


def _decision(stack: TestStack, phone: str) -> dict[str, Any] | None:
    resp = stack.http.get(stack.url("trigger-engine", f"/v1/contacts/{phone}/decisions"), headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return next((d for d in resp.json()["decisions"] if d["flow"] == FLOW), None)


def _sim_message(stack: TestStack, phone: str) -> dict[str, Any] | None:
    return next((m for m in stack.sim_messages() if m["to"].lstrip("+") == phone.lstrip("+")), None)


Check = Callable[[str, dict[str, Any]], None]  # (phone, decision) → assertion


def _payments_until_both_replicas_decided(stack: TestStack, check: Check, *, changed_at: float | None = None) -> list[str]:
    """Post payments one at a time, each checked once decided, until both replicas decided one of them.
    `changed_at` (monotonic seconds the change returned): the first payment goes at once, well within 1 s."""
    start = {r: _decided(stack, r) for r in REPLICAS}
    phones: list[str] = []
    while True:
        phone = new_phone()
        assert stack.post_events(payment(order_id=new_order(), phone=phone)).status_code == 202
        if changed_at is not None and not phones:
            assert time.monotonic() - changed_at < 1.0, "the first payment did not follow the change within 1 s"
        phones.append(phone)
        decision = poll(lambda p=phone: _decision(stack, p), timeout=30, what=f"the decision on payment {len(phones)}")
        check(phone, decision)
        took = {r: _decided(stack, r) - start[r] for r in REPLICAS}
        if all(n > 0 for n in took.values()):
            return phones
        assert len(phones) < MAX_PAYMENTS, f"{len(phones)} payments all went to one replica: {took}"


def _pids(stack: TestStack) -> dict[str, int]:
    return {name: proc.popen.pid for name, proc in stack.stack.procs.items() if proc.alive}


def test_turning_the_flow_off_and_on_governs_the_next_payment_on_both_replicas(stack: TestStack) -> None:
    pids = _pids(stack)
    original = _flow(stack)
    assert original["settings"]["enabled"] is True

    def sent(_phone: str, decision: dict[str, Any]) -> None:
        assert decision["outcome"] == "send", decision

    _payments_until_both_replicas_decided(stack, sent)  # both replicas warm, with the flow on

    off = _put(stack, {**original["settings"], "enabled": False}, replica="trigger-engine-2")
    changed_at = time.monotonic()
    assert off["settings"]["enabled"] is False and off["version"] > original["version"]

    def refused(_phone: str, decision: dict[str, Any]) -> None:
        assert decision["outcome"] != "send" and "disabled" in (decision["reason"] or ""), \
            f"a payment posted {time.monotonic() - changed_at:.2f}s after the flow was turned off: {decision}"

    off_phones = _payments_until_both_replicas_decided(stack, refused, changed_at=changed_at)
    assert all(_sim_message(stack, p) is None for p in off_phones)

    on = _put(stack, {**original["settings"], "enabled": True})
    assert on["version"] > off["version"]
    on_phones = _payments_until_both_replicas_decided(stack, sent, changed_at=time.monotonic())
    for phone in on_phones:
        poll(lambda p=phone: _sim_message(stack, p), timeout=30, what="the confirmation with the flow back on")
    assert _pids(stack) == pids, "a process was restarted"

    history = stack.http.get(stack.url("trigger-engine", f"/v1/flows/{FLOW}/history"), headers=stack.auth).json()
    changes = {c["version"]: c for c in history["changes"]}
    assert changes[off["version"]]["new"]["enabled"] is False and changes[off["version"]]["old"]["enabled"] is True
    assert changes[off["version"]]["changed_by"]  # the key id that changed it


V2 = "order_confirmation_v2"
V2_BODY = ("Thanks! Order {{1}}: {{2}}. Paid {{3}} (tax {{4}}, shipping {{5}}). In {{6}} working days. "
           "Track {{7}} Help {{8}}")


def test_switching_the_template_governs_the_next_payment_on_both_replicas(stack: TestStack) -> None:
    pids = _pids(stack)
    original = _flow(stack)
    languages = sorted(original["settings"]["templates"])
    # A second confirmation template on the bootstrap WABA, with the same eight parameters, synced into the sender.
    added = stack.http.post(stack.url("simulator", "/_sim/templates"), json=[
        {"name": V2, "language": lang, "category": "utility", "status": "APPROVED", "body": V2_BODY,
         "waba_id": BOOTSTRAP_WABA} for lang in languages])
    assert added.status_code == 200, added.text
    synced = stack.http.post(stack.url("sender", "/v1/templates/sync"), json={}, headers=stack.auth)
    assert synced.status_code == 200, synced.text
    poll(lambda: stack.http.get(stack.url("sender", "/v1/templates"), params={"name": V2, "status": "APPROVED"},
                                headers=stack.auth).json().get("templates"), timeout=30, what="v2 synced")

    def template_is(name: str) -> Check:
        def check(phone: str, decision: dict[str, Any]) -> None:
            assert decision["outcome"] == "send", decision
            message = poll(lambda: _sim_message(stack, phone), timeout=30, what="the confirmation")
            assert message["template"]["name"] == name, (name, message["template"])
        return check

    _payments_until_both_replicas_decided(stack, template_is(FLOW))

    switched = _put(stack, {**original["settings"], "templates": dict.fromkeys(languages, V2)})
    assert switched["settings"]["templates"] == dict.fromkeys(languages, V2)
    _payments_until_both_replicas_decided(stack, template_is(V2), changed_at=time.monotonic())

    _put(stack, original["settings"], replica="trigger-engine-2")
    _payments_until_both_replicas_decided(stack, template_is(FLOW), changed_at=time.monotonic())
    assert _pids(stack) == pids, "a process was restarted"


# ---------------------------------------------------------------------------------------------------------------
# Bad input: a precise 422 naming the field, and nothing changed
# ---------------------------------------------------------------------------------------------------------------


def _fields(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 422, resp.text
    return {e["field"]: e["reason"] for e in resp.json().get("errors", [])}


def test_an_unknown_setting_or_negative_numbers_are_refused_per_field_and_change_nothing(stack: TestStack) -> None:
    before = _flow(stack)
    history = stack.http.get(stack.url("trigger-engine", f"/v1/flows/{FLOW}/history"), headers=stack.auth).json()
    url = stack.url("trigger-engine", f"/v1/flows/{FLOW}")

    unknown = stack.http.put(url, json={**before["settings"], "no_such_setting": 1}, headers=stack.auth)
    assert set(_fields(unknown)) == {"body.no_such_setting"}, unknown.text
    negative = stack.http.patch(url, json={"buffer_days": -1, "expire_after_minutes": -5}, headers=stack.auth)
    assert set(_fields(negative)) == {"body.buffer_days", "body.expire_after_minutes"}, negative.text
    mixed = stack.http.patch(url, json={"enabled": False, "buffer_days": -1}, headers=stack.auth)
    assert set(_fields(mixed)) == {"body.buffer_days"}, mixed.text  # the valid half is not applied either
    missing = stack.http.put(stack.url("trigger-engine", "/v1/flows/no_such_flow"), json={}, headers=stack.auth)
    assert missing.status_code == 404, missing.text

    after = _flow(stack)
    assert (after["version"], after["settings"]) == (before["version"], before["settings"])
    assert stack.http.get(stack.url("trigger-engine", f"/v1/flows/{FLOW}/history"),
                          headers=stack.auth).json() == history


def test_bad_tenant_settings_are_refused_per_field_and_change_nothing(stack: TestStack) -> None:
    url = stack.url("trigger-engine", "/v1/settings")
    before = stack.http.get(url, headers=stack.auth).json()
    resp = stack.http.patch(url, json={"time_zone": "Mars/Olympus_Mons", "home_region": "DE",
                                       "business_hours": {"start": "25:00"}, "no_such_setting": True},
                            headers=stack.auth)
    fields = _fields(resp)
    assert {"body.time_zone", "body.no_such_setting"} <= set(fields) and "body.home_region" not in fields, resp.text
    assert any(f.startswith("body.business_hours") for f in fields), resp.text
    assert stack.http.get(url, headers=stack.auth).json() == before


def _accounts(stack: TestStack) -> list[str]:
    resp = stack.http.get(stack.url("sender", "/v1/accounts"), headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return sorted(a["account_id"] for a in resp.json()["accounts"])


def test_an_account_the_provider_refuses_is_a_422_with_its_reason_and_nothing_is_stored(stack: TestStack) -> None:
    before = _accounts(stack)
    url = stack.url("sender", "/v1/accounts")
    bad_token = stack.http.post(url, json={"account_id": "100000000000002", "waba_id": "200000000000002",
                                           "access_token": "not-the-token"}, headers=stack.auth)
    # the provider's own words, as the simulator answers that token for that number
    provider = stack.http.get(stack.url("simulator", "/v25.0/100000000000002"),
                              headers={"Authorization": "Bearer not-the-token"}).json()["error"]
    said = {provider["message"], provider.get("error_data", {}).get("details")} - {None}
    reason = _fields(bad_token).get("body.access_token", "")
    assert "190" in reason and any(words in reason for words in said), (bad_token.text, provider)
    unknown_number = stack.http.post(url, json={"account_id": "100000000000099", "waba_id": "200000000000099",
                                                "access_token": "sim-token-2"}, headers=stack.auth)
    assert "body.account_id" in _fields(unknown_number), unknown_number.text
    assert _accounts(stack) == before
    assert stack.http.get(stack.url("sender", "/v1/accounts/100000000000002"), headers=stack.auth).status_code == 404


@pytest.mark.parametrize(("field", "value"), [
    ("marketing_min_interval_s", 0.001),  # 1000 messages/s on a number of the 80/s tier
    ("marketing_per_hour", 80 * 3600 + 1),
    ("throughput_per_second", 500),  # no Cloud API tier
])
def test_pacing_faster_than_the_accounts_throughput_is_refused_naming_the_field(stack: TestStack, field: str,
                                                                                value: float) -> None:
    before = _accounts(stack)
    body = {"account_id": "100000000000002", "waba_id": "200000000000002", "access_token": "sim-token-2",
            "throughput_per_second": 80, field: value}
    resp = stack.http.post(stack.url("sender", "/v1/accounts"), json=body, headers=stack.auth)
    assert set(_fields(resp)) == {f"body.{field}"}, resp.text
    assert _accounts(stack) == before


def test_no_access_token_or_key_in_any_log_metric_or_answer(stack: TestStack) -> None:
    needles = {"a simulator access token": SIM_TOKENS, "the refused token": "not-the-token",
               "the bootstrap key": stack.api_key, "SCRM_SECRETS_KEY": stack.stack.secrets["SCRM_SECRETS_KEY"],
               "SCRM_INTERNAL_TOKEN": stack.stack.secrets["SCRM_INTERNAL_TOKEN"]}
    assert stack.responses  # the module's answers were recorded
    found = stack.sweep(needles)
    assert not found, "secrets found:\n" + "\n".join(found)
