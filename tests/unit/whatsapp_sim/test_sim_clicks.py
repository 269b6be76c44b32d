"""Issue 9: simulated customers click some of the short links they receive — which links, where the click goes
(the public base URL rewritten to ingest), no redirect followed, counted; SCRM_SIMULATOR_CLICK_RATE=0 never
clicks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whatsapp_sim.app import create_app
from whatsapp_sim.config import SimulatorSettings
from whatsapp_sim.domain.links import rewrite, short_links, texts_of
from whatsapp_sim.simulator import Simulator

PNID = "100000000000001"
AUTH = {"Authorization": "Bearer sim-token"}
SEND = f"/v25.0/{PNID}/messages"
PUBLIC = "https://s.shop.example"
INGEST = "http://127.0.0.1:8080"


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.002)


@pytest.mark.parametrize(("texts", "expected"), [
    (["Complete your order: https://s.shop.example/l/Ab3dE9xZ"], ["https://s.shop.example/l/Ab3dE9xZ"]),
    (["Grab it: http://127.0.0.1:8080/l/Q1w2E3r4."], ["http://127.0.0.1:8080/l/Q1w2E3r4"]),  # full stop not taken
    (["Resume: https://s.shop.example/r/eyJjIjoiYzEifQ.Z3x9Qg.sig-_A1 thanks"],
     ["https://s.shop.example/r/eyJjIjoiYzEifQ.Z3x9Qg.sig-_A1"]),
    (["https://s.shop.example/go/l/AAAA1111 (tap)"], ["https://s.shop.example/go/l/AAAA1111"]),  # path prefix
    (["a https://x.example/l/abc", "again https://x.example/l/abc"], ["https://x.example/l/abc"]),  # once
    (["Track: https://track.example/12345", "https://shop.example/cart?id=1"], []),  # not ours: never clicked
    (["https://x.example/l/abc/def"], []),  # a longer path is not a short link
    (["no link at all", "Order 1042", "€129.99"], []),
])
def test_short_links_are_found_in_parameter_texts(texts: list[str], expected: list[str]) -> None:
    assert short_links(texts) == expected


@pytest.mark.parametrize(("url", "public", "ingest", "expected"), [
    (f"{PUBLIC}/l/Ab3dE9xZ", PUBLIC, INGEST, f"{INGEST}/l/Ab3dE9xZ"),
    (f"{PUBLIC}/l/Ab3dE9xZ", PUBLIC + "/", INGEST + "/", f"{INGEST}/l/Ab3dE9xZ"),  # trailing slashes
    (f"{PUBLIC}/go/r/tok.en", PUBLIC + "/go", "http://ingest:8080", "http://ingest:8080/r/tok.en"),  # prefix
    (f"{INGEST}/l/Ab3dE9xZ", PUBLIC, INGEST, f"{INGEST}/l/Ab3dE9xZ"),  # already ingest's
    ("https://other.example/l/Ab3dE9xZ", PUBLIC, INGEST, "https://other.example/l/Ab3dE9xZ"),  # another base
    (f"{PUBLIC}.evil.example/l/x", PUBLIC, INGEST, f"{PUBLIC}.evil.example/l/x"),  # prefix of a host only
    (f"{PUBLIC}/l/Ab3dE9xZ", "", INGEST, f"{PUBLIC}/l/Ab3dE9xZ"),  # no public base configured
    (f"{INGEST}/l/Ab3dE9xZ", INGEST, INGEST, f"{INGEST}/l/Ab3dE9xZ"),  # the same base
])
def test_public_base_url_is_rewritten_to_ingest(url: str, public: str, ingest: str, expected: str) -> None:
    assert rewrite(url, public, ingest) == expected


@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12))
def test_any_code_survives_extraction_and_rewrite(code: str) -> None:
    found = short_links([f"Pick up where you left off: {PUBLIC}/l/{code}. Reply here."])
    assert found == [f"{PUBLIC}/l/{code}"]
    assert rewrite(found[0], PUBLIC, INGEST) == f"{INGEST}/l/{code}"


def test_texts_of_positional_named_and_button_parameters() -> None:
    assert texts_of(["a", "b"], {"first": "c"}, {"0": "d"}) == ["a", "b", "c", "d"]
    assert texts_of(None) == []


def test_click_settings_default_to_never_and_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    default = SimulatorSettings()
    assert (default.simulator_click_rate, default.simulator_click_delay_s) == (0.0, (2.0, 20.0))
    monkeypatch.setenv("SCRM_SIMULATOR_CLICK_RATE", "0.3")
    monkeypatch.setenv("SCRM_SIMULATOR_CLICK_DELAY_S", "1..5")
    monkeypatch.setenv("SCRM_PUBLIC_BASE_URL", PUBLIC)
    monkeypatch.setenv("SCRM_INGEST_URL", "http://ingest:8080")
    settings = SimulatorSettings()
    assert settings.simulator_click_rate == 0.3 and settings.simulator_click_delay_s == (1.0, 5.0)
    assert (settings.public_base_url, settings.ingest_url) == (PUBLIC, "http://ingest:8080")


@pytest.mark.parametrize("bad", [{"simulator_click_rate": 1.5}, {"simulator_click_rate": -0.1},
                                 {"simulator_click_delay_s": "5..1"}])
def test_bad_click_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SimulatorSettings(**bad)


def _price_drop(link: str) -> dict[str, object]:
    params = ["Baby monitor", "€89.00", "€99.00", link]
    return {"messaging_product": "whatsapp", "to": "+49 151 1234 5678", "type": "template",
            "template": {"name": "price_drop", "language": {"code": "en_US"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}]}}


async def _run(rate: float, message: dict[str, object]) -> tuple[Simulator, list[httpx.Request], httpx.Response]:
    clicks: list[httpx.Request] = []

    def ingest(request: httpx.Request) -> httpx.Response:
        clicks.append(request)
        return httpx.Response(302, headers={"Location": "https://shop.example/checkout/c1"})

    settings = SimulatorSettings(simulator_click_rate=rate, simulator_click_delay_s=(0.0, 0.01),
                                 simulator_p_reply=0.0, simulator_seed=7, public_base_url=PUBLIC, ingest_url=INGEST)
    app = create_app(settings, http_client=httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(200))),
                     click_client=httpx.AsyncClient(transport=httpx.MockTransport(ingest)))
    sim: Simulator = app.state.simulator
    stop = asyncio.Event()
    task = asyncio.create_task(sim.run(stop))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sim") as client:
            response = await client.post(SEND, json=message, headers=AUTH)
            if rate > 0:
                await wait_until(lambda: sim.clicker.stats.redirected == 1)
            else:
                await wait_until(lambda: sim.dispatcher.stats.delivered >= 1)  # the message's webhooks went out
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    return sim, clicks, response


async def test_a_received_short_link_is_clicked_at_ingest_without_following_the_redirect() -> None:
    sim, clicks, response = await _run(1.0, _price_drop(f"{PUBLIC}/l/Ab3dE9xZ"))
    assert response.status_code == 200
    assert [str(r.url) for r in clicks] == [f"{INGEST}/l/Ab3dE9xZ"]  # rewritten; the 302 was not followed
    assert clicks[0].method == "GET"
    assert (sim.clicker.stats.planned, sim.clicker.stats.redirected, sim.clicker.pending) == (1, 1, 0)
    assert sim.metrics.link_clicks.labels("redirected")._value.get() == 1
    assert sim.stats()["clicks"]["redirected"] == 1


async def test_rate_zero_never_clicks() -> None:
    sim, clicks, response = await _run(0.0, _price_drop(f"{PUBLIC}/l/Ab3dE9xZ"))
    assert response.status_code == 200 and clicks == [] and sim.clicker.stats.planned == 0


async def test_click_without_an_answer_is_counted_as_failed() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    app = create_app(SimulatorSettings(simulator_click_rate=1.0),
                     click_client=httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    sim: Simulator = app.state.simulator
    assert await sim.clicker.click(f"{INGEST}/l/x") is None
    assert (sim.clicker.stats.failed, sim.metrics.link_clicks.labels("failed")._value.get()) == (1, 1)
