"""The simulator app in-process (httpx.ASGITransport), with webhooks captured by a mock receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from whatsapp_sim.app import create_app
from whatsapp_sim.config import SimulatorSettings
from whatsapp_sim.simulator import Simulator
from whatsapp_sim.webhooks import SIGNATURE_HEADER, verify

PNID = "100000000000001"
AUTH = {"Authorization": "Bearer sim-token"}
SEND = f"/v25.0/{PNID}/messages"
SECRET = "test-secret"
CUSTOMER = "+49 151 1234 5678"


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.002)


class FakeClock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@dataclass
class Harness:
    client: httpx.AsyncClient
    sim: Simulator
    wall: FakeClock
    mono: FakeClock
    webhooks: list[httpx.Request] = field(default_factory=list)

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.webhooks]

    def statuses(self, wamid: str | None = None) -> list[dict[str, Any]]:
        out = [s for p in self.payloads() for e in p["entry"] for c in e["changes"]
               for s in c["value"].get("statuses", [])]
        return [s for s in out if wamid is None or s["id"] == wamid]

    def inbound_messages(self) -> list[dict[str, Any]]:
        return [m for p in self.payloads() for e in p["entry"] for c in e["changes"]
                for m in c["value"].get("messages", [])]

    async def send(self, body: dict[str, Any], headers: dict[str, str] | None = None,
                   path: str = SEND) -> httpx.Response:
        return await self.client.post(path, json=body, headers=AUTH if headers is None else headers)


Factory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    cleanup: list[tuple[asyncio.Event, asyncio.Task[None], httpx.AsyncClient]] = []

    async def build(**overrides: Any) -> Harness:
        settings = SimulatorSettings(**{
            "whatsapp_app_secret": SECRET, "simulator_seed": 42, "simulator_status_delay_ms": (1, 3),
            "simulator_p_delivered": 1.0, "simulator_p_read": 1.0, "simulator_p_fail": 0.0,
            "simulator_p_reply": 0.0, "simulator_webhook_retry_base_s": 0.01, **overrides})
        received: list[httpx.Request] = []

        def receiver(request: httpx.Request) -> httpx.Response:
            received.append(request)
            return httpx.Response(200)

        wall, mono = FakeClock(1_800_000_000.0), FakeClock(0.0)
        app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(receiver)),
                         wall=wall, mono=mono)
        sim: Simulator = app.state.simulator
        stop = asyncio.Event()
        task = asyncio.create_task(sim.run(stop))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")
        cleanup.append((stop, task, client))
        await wait_until(lambda: sim.dispatcher.running)
        return Harness(client, sim, wall, mono, received)

    yield build
    for stop, task, client in cleanup:
        stop.set()
        await asyncio.wait_for(task, 5)
        await client.aclose()


def template(name: str = "order_confirmation", language: str = "en_US", params: int = 8,
             **extra: Any) -> dict[str, Any]:
    tpl: dict[str, Any] = {"name": name, "language": {"code": language, "policy": "deterministic"}}
    if params:
        tpl["components"] = [{"type": "body", "parameters": [
            {"type": "text", "text": f"p{i}"} for i in range(1, params + 1)]}]
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": CUSTOMER,
            "type": "template", "template": tpl, **extra}


def text(body: str = "Hello there", to: str = CUSTOMER) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"body": body, "preview_url": True}}


def error_of(response: httpx.Response) -> tuple[int, int]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert body["error"]["type"] == "OAuthException"
    assert body["error"]["message"].startswith(f"(#{body['error']['code']}) ")
    assert body["error"]["error_data"]["messaging_product"] == "whatsapp"
    return response.status_code, body["error"]["code"]


async def test_template_send_is_accepted_with_a_wamid(make: Factory) -> None:
    h = await make()
    response = await h.send(template(biz_opaque_callback_data="idem-1"))
    assert response.status_code == 200
    body = response.json()
    wamid = body["messages"][0]["id"]
    assert body == {"messaging_product": "whatsapp", "contacts": [{"input": CUSTOMER, "wa_id": "4915112345678"}],
                    "messages": [{"id": wamid, "message_status": "accepted"}]}
    assert wamid.startswith("wamid.") and 40 <= len(wamid) - 6 <= 64
    listed = (await h.client.get("/_sim/messages")).json()
    assert listed["count"] == 1
    item = listed["messages"][0]
    assert (item["seq"], item["wamid"], item["phone_number_id"], item["to"], item["type"]) == (
        1, wamid, PNID, CUSTOMER, "template")
    assert item["template"]["name"] == "order_confirmation" and item["template"]["language"] == "en_US"
    assert item["template"]["parameters"] == [f"p{i}" for i in range(1, 9)]
    assert item["text"].startswith("Order p1 confirmed: p2.")
    assert item["biz_opaque_callback_data"] == "idem-1" and item["received_at"].startswith("2027-01-15T")


async def test_unknown_template_is_404_132001(make: Factory) -> None:
    h = await make()
    response = await h.send(template("no_such_template", params=0))
    assert error_of(response) == (404, 132001)
    assert response.json()["error"]["message"] == "(#132001) Template name does not exist in the translation"
    details = response.json()["error"]["error_data"]["details"]
    assert details == "template name (no_such_template) does not exist in en_US"
    assert error_of(await h.send(template(language="en"))) == (404, 132001)


async def test_wrong_parameter_count_is_132000(make: Factory) -> None:
    h = await make()
    assert error_of(await h.send(template(params=7))) == (400, 132000)


async def test_free_form_needs_the_service_window(make: Factory) -> None:
    h = await make()
    response = await h.send(text())
    assert error_of(response) == (400, 131047)
    inbound = await h.client.post("/_sim/inbound", json={"phone_number_id": PNID, "from": "+4915112345678",
                                                        "text": "Hi shop", "name": "Ada"})
    assert inbound.status_code == 200 and inbound.json()["wa_id"] == "4915112345678"
    accepted = await h.send(text())
    assert accepted.status_code == 200 and "message_status" not in accepted.json()["messages"][0]
    await wait_until(lambda: len(h.inbound_messages()) == 1)
    message = h.inbound_messages()[0]
    assert (message["from"], message["type"], message["text"]) == ("4915112345678", "text", {"body": "Hi shop"})
    value = h.payloads()[0]["entry"][0]["changes"][0]["value"]
    assert value["contacts"] == [{"profile": {"name": "Ada"}, "wa_id": "4915112345678"}]
    assert verify(SECRET, h.webhooks[0].content, h.webhooks[0].headers[SIGNATURE_HEADER])
    h.wall.at += 24 * 3600
    assert error_of(await h.send(text())) == (400, 131047)


async def test_async_window_mode_fails_by_webhook(make: Factory) -> None:
    h = await make(simulator_window_mode="async")
    response = await h.send(text())
    assert response.status_code == 200
    wamid = response.json()["messages"][0]["id"]
    await wait_until(lambda: len(h.statuses(wamid)) == 1)
    status = h.statuses(wamid)[0]
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131047
    assert set(status["errors"][0]) == {"code", "title", "message", "error_data", "href"}
    await wait_until(lambda: h.sim.store.messages()[0].status == "failed")


async def test_status_webhooks_follow_an_accepted_send(make: Factory) -> None:
    h = await make()
    response = await h.send(template(biz_opaque_callback_data="idem-7"))
    wamid = response.json()["messages"][0]["id"]
    await wait_until(lambda: len(h.statuses(wamid)) == 3)
    statuses = h.statuses(wamid)
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert all(s["biz_opaque_callback_data"] == "idem-7" and s["recipient_id"] == "4915112345678" for s in statuses)
    assert all(isinstance(s["timestamp"], str) and s["timestamp"].isdigit() for s in statuses)
    assert [("pricing" in s) for s in statuses] == [True, True, False]
    assert statuses[0]["pricing"] == {"billable": True, "pricing_model": "PMP", "type": "regular",
                                      "category": "utility"}
    assert all("conversation" not in s for s in statuses)  # omitted from v24 on
    for request in h.webhooks:
        assert verify(SECRET, request.content, request.headers[SIGNATURE_HEADER])
        payload = json.loads(request.content)
        assert payload["object"] == "whatsapp_business_account"
        assert payload["entry"][0]["changes"][0]["value"]["metadata"] == {
            "display_phone_number": "15550001111", "phone_number_id": PNID}
    await wait_until(lambda: (h.sim.store.get(wamid) or h.sim.store.messages()[0]).status == "read")
    stats = (await h.client.get("/_sim/stats")).json()
    assert stats["accepted"] == 1 and stats["webhooks"]["delivered"] == 3 and stats["webhooks"]["pending"] == 0


async def test_async_failures_carry_errors(make: Factory) -> None:
    h = await make(simulator_p_fail=1.0)
    wamid = (await h.send(template())).json()["messages"][0]["id"]
    await wait_until(lambda: len(h.statuses(wamid)) == 1)
    status = h.statuses(wamid)[0]
    assert status["status"] == "failed" and status["errors"][0]["code"] == 131026 and "pricing" not in status


async def test_customer_replies_open_the_window(make: Factory) -> None:
    h = await make(simulator_p_reply=1.0)
    await h.send(template())
    await wait_until(lambda: len(h.inbound_messages()) == 1)
    assert h.inbound_messages()[0]["from"] == "4915112345678"
    assert (await h.send(text())).status_code == 200


async def test_conversation_object_on_old_versions(make: Factory) -> None:
    h = await make()
    wamid = (await h.send(template(), path=f"/v23.0/{PNID}/messages")).json()["messages"][0]["id"]
    await wait_until(lambda: len(h.statuses(wamid)) == 3)
    sent = h.statuses(wamid)[0]
    assert sent["conversation"]["origin"] == {"type": "utility"} and "expiration_timestamp" in sent["conversation"]


@pytest.mark.parametrize(("path", "headers", "expected"), [
    (SEND, {}, (401, 190)),
    (SEND, {"Authorization": "Bearer wrong"}, (401, 190)),
    (SEND, {"Authorization": "Basic sim-token"}, (401, 190)),
    ("/v25.0/999/messages", AUTH, (400, 100)),
    (f"/v25/{PNID}/messages", AUTH, (400, 100)),
    (f"/latest/{PNID}/messages", AUTH, (400, 100)),
])
async def test_path_and_auth_errors(make: Factory, path: str, headers: dict[str, str],
                                    expected: tuple[int, int]) -> None:
    h = await make()
    response = await h.send(template(), headers=headers, path=path)
    assert error_of(response) == expected
    if expected[1] == 190:
        assert "WWW-Authenticate" in response.headers
    if path == "/v25.0/999/messages":
        assert response.json()["error"]["message"] == "(#100) Unsupported post request"


async def test_access_token_query_parameter(make: Factory) -> None:
    h = await make()
    response = await h.client.post(SEND + "?access_token=sim-token", json=template())
    assert response.status_code == 200


async def test_invalid_json_is_100(make: Factory) -> None:
    h = await make()
    response = await h.client.post(SEND, content=b"{not json", headers={**AUTH, "Content-Type": "application/json"})
    assert error_of(response) == (400, 100)


async def test_phone_number_metadata(make: Factory) -> None:
    h = await make()
    response = await h.client.get(f"/v25.0/{PNID}", headers=AUTH, params={
        "fields": "quality_rating,throughput,whatsapp_business_manager_messaging_limit,display_phone_number"})
    assert response.status_code == 200
    assert response.json() == {"id": PNID, "quality_rating": "GREEN", "throughput": {"level": "STANDARD"},
                               "whatsapp_business_manager_messaging_limit": "TIER_250",
                               "display_phone_number": "15550001111"}
    everything = (await h.client.get(f"/v25.0/{PNID}", headers=AUTH)).json()
    assert {"id", "quality_rating", "throughput", "whatsapp_business_manager_messaging_limit",
            "display_phone_number"} <= set(everything)
    assert error_of(await h.client.get(f"/v25.0/{PNID}", headers=AUTH, params={"fields": "bogus"})) == (400, 100)
    assert error_of(await h.client.get(f"/v25.0/{PNID}")) == (401, 190)


async def test_throughput_limit_130429(make: Factory) -> None:
    h = await make(simulator_mps=3)
    codes = [(await h.send(template(to=f"+49151000000{i:02d}"))).status_code for i in range(4)]
    assert codes == [200, 200, 200, 400]
    assert error_of(await h.send(template(to="+4915100000099"))) == (400, 130429)
    h.mono.at += 1.0
    assert (await h.send(template(to="+4915100000098"))).status_code == 200


async def test_pair_limit_131056(make: Factory) -> None:
    h = await make(simulator_pair_burst=2)
    assert [(await h.send(template())).status_code for _ in range(2)] == [200, 200]
    assert error_of(await h.send(template())) == (400, 131056)
    assert (await h.send(template(to="+4915199999999"))).status_code == 200
    h.mono.at += 6.0
    assert (await h.send(template())).status_code == 200


async def test_mark_as_read(make: Factory) -> None:
    h = await make()
    inbound = (await h.client.post("/_sim/inbound", json={"from": "+4915112345678", "text": "hi"})).json()
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": inbound["id"]}
    response = await h.send(body)
    assert (response.status_code, response.json()) == (200, {"success": True})
    assert error_of(await h.send({**body, "message_id": "wamid.nope"})) == (400, 131009)


async def test_paused_template_and_marketing_opt_out(make: Factory) -> None:
    h = await make()
    paused = {"name": "welcome", "language": "en_US", "category": "marketing", "status": "PAUSED",
              "body": "Hi {{1}}, welcome! Enjoy {{2}}% off your first order with code {{3}}, valid until {{4}}."}
    assert (await h.client.post("/_sim/templates", json=paused)).status_code == 200
    assert error_of(await h.send(template("welcome", params=4))) == (400, 132015)
    assert error_of(await h.send(template("welcome", "de", params=3))) == (400, 132000)
    stop = await h.client.post("/_sim/user_preferences", json={"from": CUSTOMER, "value": "stop"})
    assert stop.status_code == 200
    wamid = (await h.send(template("welcome", "de", params=4))).json()["messages"][0]["id"]
    await wait_until(lambda: len(h.statuses(wamid)) == 1)
    assert h.statuses(wamid)[0]["errors"][0]["code"] == 131050
    fields = [p["entry"][0]["changes"][0]["field"] for p in h.payloads()]
    assert "user_preferences" in fields
    assert (await h.client.post("/_sim/templates", json={"name": "x"})).status_code == 400


async def test_inspection_filters_rejections_and_reset(make: Factory) -> None:
    h = await make()
    await h.send(template())
    await h.send(template(to="+4915100000001"))
    await h.send(template("nope", params=0))
    await h.send(text())
    by_to = (await h.client.get("/_sim/messages", params={"to": "+49 151 0000 0001"})).json()
    assert [m["to"] for m in by_to["messages"]] == ["+4915100000001"]
    since = (await h.client.get("/_sim/messages", params={"since_seq": 1})).json()
    assert [m["seq"] for m in since["messages"]] == [2]
    assert (await h.client.get("/_sim/messages", params={"phone_number_id": "other"})).json()["count"] == 0
    rejections = (await h.client.get("/_sim/rejections")).json()["rejections"]
    assert [(r["code"], r["http_status"]) for r in rejections] == [(132001, 404), (131047, 400)]
    assert rejections[0]["template"] == "nope" and rejections[0]["to"] == CUSTOMER
    stats = (await h.client.get("/_sim/stats")).json()
    assert (stats["accepted"], stats["rejected"], stats["rejected_total"]) == (2, {"131047": 1, "132001": 1}, 2)
    assert (await h.client.post("/_sim/reset")).json() == {"reset": True}
    stats = (await h.client.get("/_sim/stats")).json()
    assert (stats["accepted"], stats["rejected_total"], stats["webhooks"]["pending"]) == (0, 0, 0)
    assert (await h.client.get("/_sim/messages")).json()["count"] == 0
    assert (await h.send(template())).status_code == 200


async def test_inbound_validation(make: Factory) -> None:
    h = await make()
    assert (await h.client.post("/_sim/inbound", json={"from": "abc", "text": "x"})).status_code == 400
    assert (await h.client.post("/_sim/inbound", json={"phone_number_id": "9", "from": "+4915112345678",
                                                      "text": "x"})).status_code == 404
    assert (await h.client.post("/_sim/inbound", json={"from": "+4915112345678"})).status_code == 400


async def test_operations_endpoints(make: Factory) -> None:
    h = await make()
    await h.send(template())
    assert (await h.client.get("/healthz")).json() == {"status": "ok"}
    assert (await h.client.get("/readyz")).status_code == 200
    metrics = (await h.client.get("/metrics")).text
    assert 'scrm_simulator_messages_accepted_total{type="template"} 1.0' in metrics
    assert "scrm_simulator_webhook_events_pending" in metrics


@pytest.mark.parametrize(("overrides", "to", "wa_id"), [
    ({}, "+52 55 1234 5678", "5215512345678"),  # Mexico: WhatsApp's id carries the 1
    ({"simulator_br_legacy_numbers": "+5511987654321"}, "+55 11 98765-4321", "551187654321"),  # an old mobile
    ({"simulator_br_legacy_numbers": "*"}, "+5521998765432", "552198765432"),
    ({}, "+55 11 98765-4321", "5511987654321"),  # not configured as old
    ({}, CUSTOMER, "4915112345678"),
])
async def test_whatsapp_answers_and_writes_with_its_own_wa_id(make: Factory, overrides: dict[str, str], to: str,
                                                            wa_id: str) -> None:
    h = await make(simulator_p_reply=1.0, **overrides)
    response = await h.send(template(to=to, biz_opaque_callback_data="idem-mx"))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["contacts"] == [{"input": to, "wa_id": wa_id}]
    wamid = answer["messages"][0]["id"]
    await wait_until(lambda: len(h.statuses(wamid)) == 3 and len(h.inbound_messages()) == 1)
    assert {s["recipient_id"] for s in h.statuses(wamid)} == {wa_id}
    [reply] = h.inbound_messages()
    assert reply["from"] == wa_id
    contacts = [c for p in h.payloads() for e in p["entry"] for ch in e["changes"]
                for c in ch["value"].get("contacts", [])]
    assert [c["wa_id"] for c in contacts] == [wa_id]
    # the reply opened the window of that WhatsApp user, whichever form the shop sends to
    assert (await h.send(text(to=to))).status_code == 200
    listed = (await h.client.get("/_sim/messages", params={"to": to})).json()
    assert listed["count"] == 2 and {m["wa_id"] for m in listed["messages"]} == {wa_id}


async def test_a_simulated_customer_writes_from_the_wa_id(make: Factory) -> None:
    h = await make()
    answer = (await h.client.post("/_sim/inbound", json={"from": "+525512345678", "text": "¿Llega mañana?"})).json()
    assert answer["wa_id"] == "5215512345678"
    await wait_until(lambda: len(h.inbound_messages()) == 1)
    assert h.inbound_messages()[0]["from"] == "5215512345678"
    assert (await h.send(text(to="+525512345678"))).status_code == 200  # the window is that user's
