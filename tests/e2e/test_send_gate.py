"""Issue 8 item 5 (b) and the story acceptance, on the running stack: the send gate respects the customer.

- A welcome to a contact whose own local time is now inside quiet hours (22:00–08:00) is not at the simulator:
  suppressed EXPIRED when waiting for 08:00 would pass its 15-minute expiry (R-T1.1), else queued until that
  contact's next local 08:00 (R-S4) — and withdrawn by a first purchase while the order confirmation arrives.
- "Stopp" written by a contact (simulator → signed webhook → ingest → `message.inbound`) suppresses their queued
  and later marketing (R-S6) and is confirmed in German, while an order confirmation still arrives; "stop sending
  the wrong size" is a complaint, not an opt-out.
- A fourth marketing message inside 7 days is suppressed with R-S5 and counted so in `GET /v1/reports/gate`.
- `GET /v1/contacts/{c}/decisions` tells, for every message decided for these contacts, whether it reached them
  and, if not, which rule stopped it.

The zones are chosen at test time from a list covering every UTC offset: "quiet" is one whose local time is now
23:00–06:00 (so its next 08:00 is hours away and no boundary is crossed while the test runs), "day" one whose local
time is 10:00–19:00. Expected instants are computed here with zoneinfo, independently of the gate's code.
One stack for the module; the account's marketing pace (R-S3) is lowered so the test takes seconds.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer

from scrm_common.contracts import topics
from scrm_common.contracts.commands import SendMessage, TemplateMessage
from tests.support.backend import Backend
from tests.support.events import contact_created_in, new_id, new_order, new_phone, payment
from tests.support.stack import TestStack, poll, start_stack

ACCOUNT = "100000000000001"  # the bootstrap account
WELCOME = "welcome"
QUIET_START, QUIET_END = time(22, 0), time(8, 0)  # R-S4: the tenant's default allowed hours are 08:00–22:00
# One zone per UTC offset from −11 to +14 (some move with DST; any of them will do as long as its local hour fits).
ZONES = ("Pacific/Pago_Pago", "Pacific/Honolulu", "America/Anchorage", "America/Los_Angeles", "America/Denver",
         "America/Chicago", "America/New_York", "America/Halifax", "America/Sao_Paulo", "Atlantic/South_Georgia",
         "Atlantic/Azores", "Europe/London", "Europe/Berlin", "Europe/Athens", "Europe/Moscow", "Asia/Dubai",
         "Asia/Karachi", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Australia/Brisbane",
         "Pacific/Noumea", "Pacific/Auckland", "Pacific/Kiritimati")
GERMAN_STOP = "Sie erhalten keine Werbenachrichten mehr von uns"
TIMEOUT = 30


@dataclass
class Gate:
    """The module's stack and what its tests learned about their contacts (for the story test)."""

    stack: TestStack
    tenant: str
    # contact key → {idempotency key → expected (status, stopped_by)}
    expected: dict[str, dict[str, tuple[str, str | None]]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def gate(backend: Backend, work_dir: Path) -> Iterator[Gate]:
    stack = start_stack(work_dir, backend, processes=("ingest", "trigger-engine", "sender", "reporting", "simulator"))
    try:
        resp = stack.http.patch(stack.url("sender", f"/v1/accounts/{ACCOUNT}"), headers=stack.auth,
                                json={"marketing_min_interval_s": 0.2, "marketing_max_interval_s": 0.3})
        assert resp.status_code == 200, resp.text
        tenant = stack.http.get(stack.url("sender", "/v1/accounts"), headers=stack.auth).json()["tenant"]
    except BaseException:
        stack.close()
        raise
    yield Gate(stack, tenant)
    stack.close()


# -- time, computed independently of the gate ---------------------------------------------------------------------


def _local_hour_zone(hours: set[int]) -> str:
    """The first zone of ZONES whose local hour is now one of `hours`."""
    now = datetime.now(UTC)
    found = [z for z in ZONES if now.astimezone(ZoneInfo(z)).hour in hours]
    assert found, f"no zone of {ZONES} is at a local hour in {sorted(hours)} at {now.isoformat()}"
    return found[0]


def quiet_zone() -> str:
    """A zone where it is now 23:00–05:59 local: inside quiet hours, its next 08:00 at least 2 h away."""
    return _local_hour_zone({23, 0, 1, 2, 3, 4, 5})


def day_zone() -> str:
    """A zone where it is now 10:00–18:59 local: well inside the allowed hours."""
    return _local_hour_zone(set(range(10, 19)))


def next_local_eight(zone: str, now: datetime | None = None) -> datetime:
    """The contact's next local 08:00 after `now` (UTC), as a UTC instant."""
    tz = ZoneInfo(zone)
    local = (now or datetime.now(UTC)).astimezone(tz)
    at = datetime.combine(local.date(), QUIET_END, tzinfo=tz)
    if at <= local:
        at = datetime.combine(local.date() + timedelta(days=1), QUIET_END, tzinfo=tz)
    return at.astimezone(UTC)


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# -- the stack's answers ------------------------------------------------------------------------------------------


def _welcome_settings(stack: TestStack, **settings: Any) -> None:
    resp = stack.http.patch(stack.url("trigger-engine", f"/v1/flows/{WELCOME}"), json=settings, headers=stack.auth)
    assert resp.status_code == 200, resp.text
    assert {k: resp.json()["settings"][k] for k in settings} == settings


def _decisions(stack: TestStack, contact: str) -> dict[str, Any]:
    resp = stack.http.get(stack.url("trigger-engine", f"/v1/contacts/{quote(contact, safe='')}/decisions"),
                          headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _sent_key(stack: TestStack, contact: str, flow: str) -> str:
    """The idempotency key of the message the trigger-engine decided to send `contact` in `flow`."""
    def found() -> str | None:
        return next((d["idempotency_key"] for d in _decisions(stack, contact)["decisions"]
                     if d["flow"] == flow and d["outcome"] == "send"), None)
    return poll(found, timeout=TIMEOUT, what=f"the {flow} decided to send for {contact}")


def _message(stack: TestStack, key: str) -> dict[str, Any] | None:
    """The sender's send-log row of `key` (None: not there yet)."""
    resp = stack.http.get(stack.url("sender", f"/v1/messages/{quote(key, safe='')}"), headers=stack.auth)
    if resp.status_code == 404:
        return None
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _message_when(stack: TestStack, key: str, what: str, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the send-log row of `key` until `ok(row)`; the failure names the last row seen."""
    def found() -> dict[str, Any] | None:
        row = _message(stack, key)
        return row if row is not None and ok(row) else None
    return poll(found, timeout=TIMEOUT, what=what)


def _at_sim(stack: TestStack, phone: str) -> list[dict[str, Any]]:
    return stack.sim_messages(to=phone)


def _told(stack: TestStack, contact: str) -> dict[str, Any]:
    """The contact's story once it could ask the sender: under load a read may find the send log slower than
    the route's 2 s budget (`send_log: "unavailable"`), which the next read does not."""
    return poll(lambda: (told if (told := _decisions(stack, contact))["send_log"] == "ok" else None),
                timeout=TIMEOUT, what=f"{contact}'s story with the sender's send log")


def _summary(stack: TestStack, contact: str, key: str) -> dict[str, Any]:
    told = _told(stack, contact)
    found = [m for m in told["messages"] if m["idempotency_key"] == key]
    assert found, f"{key} is not in the story's messages: {told['messages']}"
    return dict(found[0])


def _counter(stack: TestStack, name: str, **labels: str) -> float:
    """The sum of the sender's counter `name` over series carrying `labels`."""
    total = 0.0
    for line in stack.metrics("sender").splitlines():
        match = re.match(rf"^{name}\{{([^}}]*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _produce(stack: TestStack, commands: list[SendMessage]) -> None:
    """Publish send commands to `scrm.send-commands.v1` as a deciding service would (keyed by account)."""
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.stack.kafka_bootstrap)
        await producer.start()
        try:
            for command in commands:
                await producer.send_and_wait(topics.SEND_COMMANDS, command.model_dump_json(exclude_none=True).encode(),
                                             key=command.kafka_key.encode(),
                                             headers=[("tenant", command.tenant.encode())])
        finally:
            await producer.stop()

    asyncio.run(run())


def _promotion(tenant: str, *, flow: str, contact: str, phone: str, zone: str) -> SendMessage:
    """A marketing command (the bootstrap `welcome` template, which the simulator knows) with its own key."""
    now = datetime.now(UTC)
    return SendMessage(
        idempotency_key=f"{tenant}|{flow}|{uuid.uuid4().hex}", tenant=tenant, account_id=ACCOUNT, flow=flow,
        category="marketing", contact_key=contact, to=phone,
        template=TemplateMessage(name=WELCOME, language="en_US", parameters=["Kim", "10", "PROMO10-E2E", "soon"]),
        event_id=new_id("promo"), event_occurred_at=now, decided_at=now, expires_at=now + timedelta(hours=1),
        timezone=zone)


def _deferred_welcome(gate: Gate, *, locale: str = "en-US") -> tuple[str, str, str, str, datetime]:
    """A new contact in a quiet-hours zone whose welcome is queued, deferred by R-S4 until their next local 08:00
    (the welcome's expiry raised so the deferral fits): (contact, phone, zone, key, expected until)."""
    stack = gate.stack
    _welcome_settings(stack, expire_after_minutes=24 * 60, delay_minutes=0)
    zone, contact, phone = quiet_zone(), new_id("night"), new_phone()
    resp = stack.post_events(contact_created_in(zone, phone=phone, external_id=contact, name="Lena Maier",
                                                locale=locale))
    assert resp.status_code == 202, resp.text
    until = next_local_eight(zone)
    key = _sent_key(stack, contact, WELCOME)
    queued = _message_when(stack, key, "the welcome deferred by R-S4",
                           lambda m: m["state"] == "queued" and m["rule"] == "R-S4")
    assert _instant(queued["deferred_until"]) == until, (zone, queued)
    assert zone in (queued["error_reason"] or ""), queued  # the reason names the contact's zone
    return contact, phone, zone, key, until


# -- the tests ----------------------------------------------------------------------------------------------------


def test_a_welcome_at_night_that_could_only_go_after_its_expiry_is_suppressed_expired(gate: Gate) -> None:
    stack = gate.stack
    _welcome_settings(stack, expire_after_minutes=15, delay_minutes=0)
    zone, contact, phone = quiet_zone(), new_id("night"), new_phone()
    created = datetime.now(UTC)
    resp = stack.post_events(contact_created_in(zone, phone=phone, external_id=contact, name="Lena Maier",
                                                occurred_at=created))
    assert resp.status_code == 202, resp.text

    key = _sent_key(stack, contact, WELCOME)
    gone = _message_when(stack, key, "the welcome suppressed", lambda m: m["state"] != "queued")
    assert (gone["state"], gone["rule"]) == ("suppressed", "EXPIRED"), (zone, gone)
    # the deferral it would have needed, in the contact's zone, and the 15-minute expiry it would pass
    assert next_local_eight(zone, created).isoformat() in (gone["error_reason"] or ""), (zone, gone)
    assert "quiet hours" in gone["error_reason"] and zone in gone["error_reason"], gone
    expires = _instant(gone["expires_at"])
    assert expires is not None and abs(expires - (created + timedelta(minutes=15))) < timedelta(seconds=1), gone
    assert _at_sim(stack, phone) == []

    summary = poll(lambda: (s := _summary(stack, contact, key))["status"] != "pending" and s, timeout=TIMEOUT,
                   what="the story telling the welcome's end")
    assert (summary["status"], summary["reached"], summary["stopped_by"]) == ("stopped", False, "EXPIRED"), summary
    gate.expected[contact] = {key: ("stopped", "EXPIRED")}


def test_a_welcome_at_night_waits_for_the_contacts_0800_and_a_first_purchase_withdraws_it(gate: Gate) -> None:
    stack = gate.stack
    contact, phone, zone, key, until = _deferred_welcome(gate)
    assert _at_sim(stack, phone) == []

    told = _decisions(stack, contact)
    [summary] = [m for m in told["messages"] if m["idempotency_key"] == key]
    assert (summary["status"], summary["pending"], summary["reached"]) == ("pending", True, False), summary
    assert _instant(summary["until"]) == until, summary
    steps = [(line["step"], line["rule"]) for line in told["story"] if line["idempotency_key"] == key]
    assert steps[0] == ("decided", None) and ("deferred", "R-S4") in steps, told["story"]
    [deferred] = [line for line in told["story"] if line["idempotency_key"] == key and line["step"] == "deferred"]
    assert _instant(deferred["until"]) == until and zone in deferred["reason"], deferred

    order = new_order()
    resp = stack.post_events(payment(order_id=order, phone=phone, external_id=contact, name="Lena Maier"))
    assert resp.status_code == 202, resp.text
    confirmation = poll(lambda: [m for m in _at_sim(stack, phone) if m["template"]], timeout=TIMEOUT,
                        what="the order confirmation at the simulator")
    assert [(m["template"]["name"], m["template"]["parameters"][0]) for m in confirmation] == \
        [("order_confirmation", order)], confirmation
    withdrawn = _message_when(stack, key, "the welcome withdrawn", lambda m: m["state"] != "queued")
    assert (withdrawn["state"], withdrawn["rule"]) == ("suppressed", "WITHDRAWN"), withdrawn

    summary = poll(lambda: (s := _summary(stack, contact, key))["status"] == "stopped" and s, timeout=TIMEOUT,
                   what="the story telling the withdrawal")
    assert (summary["stopped_by"], summary["reached"]) == ("WITHDRAWN", False), summary
    assert summary["reason"] == "cancelled: purchased", summary
    paid = _sent_key(stack, contact, "order_confirmation")
    poll(lambda: _summary(stack, contact, paid)["status"] == "reached", timeout=TIMEOUT,
         what="the story telling the confirmation reached them")
    assert [m["template"]["name"] for m in _at_sim(stack, phone)] == ["order_confirmation"]  # never the welcome
    gate.expected[contact] = {key: ("stopped", "WITHDRAWN"), paid: ("reached", None)}


def test_stopp_suppresses_queued_and_later_marketing_and_is_confirmed_in_german_but_orders_still_arrive(
        gate: Gate) -> None:
    stack = gate.stack
    contact, phone, _zone, key, _until = _deferred_welcome(gate, locale="de-DE")
    other, other_phone, _other_zone, other_key, other_until = _deferred_welcome(gate, locale="de-DE")
    inbound_before = _counter(stack, "scrm_sender_reachability_events_total", kind="inbound")
    stops_before = _counter(stack, "scrm_sender_opt_out_changes_total", choice="stop", source="keyword")

    for who, words in ((other_phone, "stop sending the wrong size"), (phone, "Stopp")):
        resp = stack.http.post(stack.url("simulator", "/_sim/inbound"), json={"from": who, "text": words})
        assert resp.status_code == 200, resp.text

    stopped = _message_when(stack, key, "the queued welcome suppressed by the stop", lambda m: m["state"] != "queued")
    assert (stopped["state"], stopped["rule"]) == ("suppressed", "R-S6"), stopped
    [reply] = poll(lambda: [m for m in _at_sim(stack, phone) if m["type"] == "text"], timeout=TIMEOUT,
                   what="the German confirmation at the simulator")
    assert reply["text"].startswith(GERMAN_STOP), reply
    # the sender applied both inbound messages, and only one of them as a stop
    poll(lambda: _counter(stack, "scrm_sender_reachability_events_total", kind="inbound") >= inbound_before + 2,
         timeout=TIMEOUT, what="the sender applying both inbound messages")
    assert _counter(stack, "scrm_sender_opt_out_changes_total", choice="stop", source="keyword") == stops_before + 1

    # a later marketing message (any deciding service's) is suppressed for them too
    later = _promotion(gate.tenant, flow=f"promo_{uuid.uuid4().hex[:8]}", contact=contact, phone=phone,
                       zone=day_zone())
    _produce(stack, [later])
    refused = _message_when(stack, later.idempotency_key, "the later promotion decided",
                            lambda m: m["state"] not in ("queued", "sending"))
    assert (refused["state"], refused["rule"]) == ("suppressed", "R-S6"), refused

    order = new_order()
    resp = stack.post_events(payment(order_id=order, phone=phone, external_id=contact, name="Lena Maier",
                                     locale="de-DE"))
    assert resp.status_code == 202, resp.text
    arrived = poll(lambda: [m for m in _at_sim(stack, phone) if m["template"]], timeout=TIMEOUT,
                   what="the order confirmation after the stop")
    assert [(m["template"]["name"], m["template"]["parameters"][0]) for m in arrived] == \
        [("order_confirmation", order)], arrived
    paid = _sent_key(stack, contact, "order_confirmation")

    # the complaint changed nothing: the welcome still waits for that contact's 08:00, nothing went to them
    waiting = _message(stack, other_key)
    assert waiting is not None and (waiting["state"], waiting["rule"]) == ("queued", "R-S4"), waiting
    assert _instant(waiting["deferred_until"]) == other_until, waiting
    assert _at_sim(stack, other_phone) == []
    summary = _summary(stack, contact, key)
    assert (summary["status"], summary["stopped_by"]) == ("stopped", "R-S6"), summary
    gate.expected[contact] = {key: ("stopped", "R-S6"), paid: ("reached", None)}
    gate.expected[other] = {other_key: ("pending", None)}


def test_a_fourth_promotion_within_seven_days_is_suppressed_r_s5_and_reported(gate: Gate) -> None:
    stack = gate.stack
    flow = f"promo_{uuid.uuid4().hex[:8]}"
    contact, phone, zone = new_id("promo"), new_phone(), day_zone()
    commands = [_promotion(gate.tenant, flow=flow, contact=contact, phone=phone, zone=zone) for _ in range(4)]
    _produce(stack, commands)

    def final() -> list[dict[str, Any]] | None:
        rows = [_message(stack, c.idempotency_key) for c in commands]
        done = [r for r in rows if r is not None and r["state"] in ("sent", "suppressed", "failed")]
        return done if len(done) == len(commands) else None

    rows = poll(final, timeout=TIMEOUT, what="all four promotions sent or suppressed")
    states = sorted((r["state"], r["rule"]) for r in rows)
    assert [s for s, _ in states] == ["sent", "sent", "sent", "suppressed"], rows
    [capped] = [r for r in rows if r["state"] == "suppressed"]
    assert capped["rule"] == "R-S5" and "3 marketing messages in the last 7 days" in capped["error_reason"], capped
    def three() -> list[dict[str, Any]] | None:
        arrived = _at_sim(stack, phone)
        return arrived if len(arrived) >= 3 else None
    assert len(poll(three, timeout=TIMEOUT, what="three promotions at the simulator")) == 3
    assert {m["wamid"] for m in _at_sim(stack, phone)} == {r["wamid"] for r in rows if r["state"] == "sent"}

    def reported() -> dict[str, Any] | None:
        resp = stack.http.get(stack.url("reporting", "/v1/reports/gate"), params={"flow": flow}, headers=stack.auth)
        assert resp.status_code == 200, resp.text
        flows = [f for f in resp.json()["flows"] if f["flow"] == flow]
        return flows[0] if flows and flows[0]["suppressed"] >= 1 else None

    counted = poll(reported, timeout=TIMEOUT, what="the suppression in GET /v1/reports/gate")
    assert counted["suppressed"] == 1, counted
    assert [(r["rule"], r["suppressed"]) for r in counted["rules"]] == [("R-S5", 1)], counted


def test_the_story_tells_for_every_decided_message_whether_it_reached_them_or_which_rule_stopped_it(
        gate: Gate) -> None:
    stack = gate.stack
    assert gate.expected, "the tests above recorded no contact"
    for contact, expected in gate.expected.items():
        def settled(contact: str = contact, expected: dict[str, tuple[str, str | None]] = expected) -> Any:
            told = _told(stack, contact)
            summary = {m["idempotency_key"]: (m["status"], m["stopped_by"]) for m in told["messages"]}
            return told if summary == expected else None

        try:
            told = poll(settled, timeout=TIMEOUT, what=f"{contact}'s story to tell every expected outcome")
        except AssertionError:
            told = _told(stack, contact)  # the assertions below say precisely what differs
        messages = {m["idempotency_key"]: m for m in told["messages"]}
        decided = {d["idempotency_key"] for d in told["decisions"] if d["idempotency_key"]}
        assert set(messages) == decided, (contact, told)  # every decided message has its summary
        assert set(messages) == set(expected), (contact, sorted(messages), sorted(expected))
        for key, message in messages.items():
            status, rule = expected[key]
            assert (message["status"], message["stopped_by"]) == (status, rule), (contact, message)
            assert message["reached"] is (status == "reached"), (contact, message)
            if status == "stopped":
                assert message["reason"], (contact, message)  # the human reason besides the rule
            lines = [line for line in told["story"] if line["idempotency_key"] == key]
            assert lines and lines[0]["step"] == "decided", (contact, lines)
            if status == "reached":
                assert "sent" in [line["step"] for line in lines], (contact, lines)
            if status == "stopped":
                # the last step that stopped it names the rule; an engine's later withdrawal of a message the
                # sender had already stopped (the payment overtook the stop on its way to the engine) is told
                # too, but it changed nothing
                stops = [line for line in lines if line["step"] in ("suppressed", "expired")]
                assert stops and stops[-1]["rule"] == rule, (contact, lines)
