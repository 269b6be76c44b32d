"""The simulator's WhatsApp Business Accounts (issue 7): several numbers each of its own WABA, the management
endpoint `GET /{version}/{waba_id}/message_templates` (paged, token checked per WABA, 80007 on request), and
a template paused on request with the signed `message_template_status_update` webhook (CLOUD-API §2.4, §5.5)."""

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
from whatsapp_sim.simulator import Simulator, load_catalog
from whatsapp_sim.webhooks import SIGNATURE_HEADER, verify

SECRET = "test-secret"
WABA_1, WABA_2 = "200000000000001", "200000000000002"
PNID_1, PNID_2 = "100000000000001", "100000000000002"
TOKEN_1, TOKEN_2 = {"Authorization": "Bearer sim-token"}, {"Authorization": "Bearer sim-token-2"}
CATALOG = sorted((t.name, t.language) for t in load_catalog(SimulatorSettings()).all())


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.002)


@dataclass
class Sim:
    client: httpx.AsyncClient
    sim: Simulator
    webhooks: list[httpx.Request] = field(default_factory=list)

    def changes(self, field_name: str) -> list[tuple[str, dict[str, Any]]]:
        """(entry.id, value) of every webhook change of that field."""
        return [(e["id"], c["value"]) for r in self.webhooks for e in json.loads(r.content)["entry"]
                for c in e["changes"] if c["field"] == field_name]

    async def listing(self, waba: str = WABA_1, headers: dict[str, str] | None = None,
                      **params: Any) -> httpx.Response:
        return await self.client.get(f"/v25.0/{waba}/message_templates", params=params,
                                     headers=TOKEN_1 if headers is None else headers)

    async def send_template(self, pnid: str, headers: dict[str, str], name: str = "welcome_generic",
                            language: str = "en_US") -> httpx.Response:
        body = {"messaging_product": "whatsapp", "to": "+4915112345678", "type": "template", "template": {
            "name": name, "language": {"code": language}, "components": [{"type": "body", "parameters": [
                {"type": "text", "text": v} for v in ("10", "WELCOME10", "Friday")]}]}}
        return await self.client.post(f"/v25.0/{pnid}/messages", json=body, headers=headers)


Factory = Callable[..., Awaitable[Sim]]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    cleanup: list[tuple[asyncio.Event, asyncio.Task[None], httpx.AsyncClient]] = []

    async def build(**overrides: Any) -> Sim:
        settings = SimulatorSettings(**{"whatsapp_app_secret": SECRET, "simulator_seed": 7,
                                        "simulator_status_delay_ms": (1, 2), "simulator_p_fail": 0.0,
                                        "simulator_p_reply": 0.0, **overrides})
        received: list[httpx.Request] = []

        def receiver(request: httpx.Request) -> httpx.Response:
            received.append(request)
            return httpx.Response(200)

        app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(receiver)))
        sim: Simulator = app.state.simulator
        stop = asyncio.Event()
        task = asyncio.create_task(sim.run(stop))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim")
        cleanup.append((stop, task, client))
        await wait_until(lambda: sim.dispatcher.running)
        return Sim(client, sim, received)

    yield build
    for stop, task, client in cleanup:
        stop.set()
        await asyncio.wait_for(task, 5)
        await client.aclose()


async def test_every_page_is_read_by_following_after_until_there_is_no_next(make: Factory) -> None:
    sim = await make()
    seen: list[dict[str, Any]] = []
    pages: list[int] = []
    after: str | None = None
    while True:
        resp = await sim.listing(limit=3, **({"after": after} if after else {}))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += body["data"]
        pages.append(len(body["data"]))
        if "next" not in body["paging"]:
            break
        assert "after=" in body["paging"]["next"]
        after = body["paging"]["cursors"]["after"]
    assert pages == [3] * (len(CATALOG) // 3) + ([len(CATALOG) % 3] if len(CATALOG) % 3 else [])
    assert sorted((t["name"], t["language"]) for t in seen) == CATALOG
    assert len({t["id"] for t in seen}) == len(CATALOG) and all(t["id"].isdigit() for t in seen)
    order = next(t for t in seen if (t["name"], t["language"]) == ("order_confirmation", "en_US"))
    assert (order["status"], order["category"]) == ("APPROVED", "UTILITY")
    assert [c["type"] for c in order["components"]] == ["BODY"] and "{{8}}" in order["components"][0]["text"]
    # a template's id is stable across listings, and the before cursor goes back a page
    again = (await sim.listing(limit=3)).json()
    assert again["data"] == seen[:3]
    back = (await sim.listing(limit=3, before=again["paging"]["cursors"]["after"])).json()
    assert back["data"] == seen[:2]


async def test_fields_limit_and_filters(make: Factory) -> None:
    sim = await make()
    body = (await sim.listing(fields="name,status", limit=1000)).json()
    assert len(body["data"]) == min(len(CATALOG), 100)
    assert all(set(t) == {"id", "name", "status"} for t in body["data"])
    welcome = (await sim.listing(name="welcome")).json()["data"]
    assert sorted(t["language"] for t in welcome) == ["de", "en_US"]
    assert (await sim.listing(status="PAUSED")).json() == {"data": []}


@pytest.mark.parametrize(("waba", "headers", "path_version", "status", "code"), [
    (WABA_1, {}, "v25.0", 401, 190),  # no token
    (WABA_1, {"Authorization": "Bearer nope"}, "v25.0", 401, 190),  # a token nobody has
    (WABA_1, TOKEN_2, "v25.0", 403, 200),  # another WABA's number's token
    (WABA_2, TOKEN_1, "v25.0", 403, 200),
    ("299999999999999", TOKEN_1, "v25.0", 400, 100),  # no such WABA
    (WABA_1, TOKEN_1, "latest", 400, 100),
])
async def test_the_listing_needs_a_token_of_a_number_of_that_waba(make: Factory, waba: str, headers: dict[str, str],
                                                                  path_version: str, status: int, code: int) -> None:
    sim = await make()
    resp = await sim.client.get(f"/{path_version}/{waba}/message_templates", headers=headers)
    assert (resp.status_code, resp.json()["error"]["code"]) == (status, code)


async def test_a_bad_cursor_or_limit_is_refused_with_code_100(make: Factory) -> None:
    sim = await make()
    for params in ({"after": "not-a-cursor"}, {"limit": "0"}, {"limit": "many"}):
        resp = await sim.listing(**params)
        assert (resp.status_code, resp.json()["error"]["code"]) == (400, 100), params


async def test_the_rate_limit_answers_80007_as_many_times_as_asked(make: Factory) -> None:
    sim = await make(simulator_rate_limit_templates=2)
    for _ in range(2):
        resp = await sim.listing()
        assert (resp.status_code, resp.json()["error"]["code"]) == (400, 80007)
    assert (await sim.listing()).status_code == 200


async def test_a_paused_template_sends_the_signed_webhook_and_is_refused_until_approved(make: Factory) -> None:
    sim = await make()
    resp = await sim.client.post(f"/_sim/templates/{WABA_1}/welcome_generic/status",
                                 json={"status": "PAUSED", "language": "en_US", "reason": "LOW_QUALITY"})
    assert resp.status_code == 200, resp.text
    [changed] = resp.json()["templates"]
    assert (changed["name"], changed["language"], changed["status"]) == ("welcome_generic", "en_US", "PAUSED")
    await wait_until(lambda: bool(sim.changes("message_template_status_update")))
    [(entry_id, value)] = sim.changes("message_template_status_update")
    assert entry_id == WABA_1
    assert value == {"event": "PAUSED", "message_template_id": int(changed["id"]),
                     "message_template_name": "welcome_generic", "message_template_language": "en_US",
                     "reason": "LOW_QUALITY", "message_template_category": "MARKETING"}
    assert all(verify(SECRET, r.content, r.headers[SIGNATURE_HEADER]) for r in sim.webhooks)

    refused = await sim.send_template(PNID_1, TOKEN_1)
    assert (refused.status_code, refused.json()["error"]["code"]) == (400, 132015)
    # the other WABA's copy of the template is untouched, and so is its other language
    assert (await sim.send_template(PNID_2, TOKEN_2)).status_code == 200
    listed = {(t["name"], t["language"]): t["status"] for t in (await sim.listing(limit=100)).json()["data"]}
    assert (listed[("welcome_generic", "en_US")], listed[("welcome_generic", "de")]) == ("PAUSED", "APPROVED")

    await sim.client.post(f"/_sim/templates/{WABA_1}/welcome_generic/status", json={"status": "APPROVED"})
    await wait_until(lambda: len(sim.changes("message_template_status_update")) == 3)  # both languages
    assert (await sim.send_template(PNID_1, TOKEN_1)).status_code == 200

    await sim.client.post(f"/_sim/templates/{WABA_1}/welcome_generic/status",
                          json={"status": "DISABLED", "language": "en_US"})
    disabled = await sim.send_template(PNID_1, TOKEN_1)
    assert (disabled.status_code, disabled.json()["error"]["code"]) == (400, 132016)


@pytest.mark.parametrize(("path", "body", "status"), [
    (f"/_sim/templates/{WABA_1}/no_such_template/status", {"status": "PAUSED"}, 404),
    (f"/_sim/templates/{WABA_1}/welcome/status", {"status": "PAUSED", "language": "fr"}, 404),
    ("/_sim/templates/299/welcome/status", {"status": "PAUSED"}, 404),
    (f"/_sim/templates/{WABA_1}/welcome/status", {"status": "ASLEEP"}, 400),
    (f"/_sim/templates/{WABA_1}/welcome/status", {"status": "PAUSED", "language": 7}, 400),
])
async def test_a_bad_status_change_changes_nothing(make: Factory, path: str, body: dict[str, Any],
                                                   status: int) -> None:
    sim = await make()
    resp = await sim.client.post(path, json=body)
    assert resp.status_code == status
    assert all(t.status == "APPROVED" for c in sim.sim.catalogs.values() for t in c.all())
    assert sim.changes("message_template_status_update") == []


async def test_each_numbers_webhooks_name_its_waba_and_display_number(make: Factory) -> None:
    sim = await make()
    assert (await sim.send_template(PNID_2, TOKEN_2)).status_code == 200
    await wait_until(lambda: bool(sim.changes("messages")))
    entry_id, value = sim.changes("messages")[0]
    assert entry_id == WABA_2
    assert value["metadata"] == {"display_phone_number": "15550002222", "phone_number_id": PNID_2}
    # a number's token sends only from that number
    resp = await sim.send_template(PNID_2, TOKEN_1)
    assert (resp.status_code, resp.json()["error"]["code"]) == (401, 190)
