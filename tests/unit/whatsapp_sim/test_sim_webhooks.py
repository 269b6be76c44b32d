"""Webhook signing, envelope shapes and asynchronous delivery (batching, retries, giving up)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from whatsapp_sim.webhooks import (
    SIGNATURE_HEADER,
    StatusEvent,
    ValueEvent,
    WebhookDispatcher,
    encode,
    envelope,
    inbound_value,
    sign,
    status_object,
    verify,
)

SECRET = "s3cr3t"
META = {"display_phone_number": "15550001111", "phone_number_id": "111"}


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.002)


def test_signature_is_hmac_sha256_over_the_exact_bytes() -> None:
    body = '{"a":"ünïcode","b":[1, 2]}'.encode()
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert sign(SECRET, body) == f"sha256={expected}"
    assert verify(SECRET, body, f"sha256={expected}")
    reserialised = json.dumps(json.loads(body)).encode()  # same JSON, other bytes
    assert reserialised != body and not verify(SECRET, reserialised, f"sha256={expected}")
    assert not verify("other", body, f"sha256={expected}") and not verify(SECRET, body, None)


def test_status_envelope_shape() -> None:
    status = status_object(wamid="wamid.X", status="sent", timestamp=1750030073, recipient_id="491",
                           biz_opaque_callback_data="idem-1",
                           pricing={"billable": True, "pricing_model": "PMP", "type": "regular",
                                    "category": "utility"})
    payload = envelope("waba", META, {"statuses": [status]})
    assert payload == {"object": "whatsapp_business_account", "entry": [{"id": "waba", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp", "metadata": META, "statuses": [{
            "id": "wamid.X", "status": "sent", "timestamp": "1750030073", "recipient_id": "491",
            "biz_opaque_callback_data": "idem-1",
            "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "utility"}}]}}]}]}
    assert "biz_opaque_callback_data" not in status_object(wamid="w", status="read", timestamp=1, recipient_id="1")


def test_inbound_value_shape() -> None:
    message = {"from": "491", "id": "wamid.I", "timestamp": "17", "type": "text", "text": {"body": "hi"}}
    assert inbound_value(wa_id="491", name="Ada", message=message) == {
        "contacts": [{"profile": {"name": "Ada"}, "wa_id": "491"}], "messages": [message]}


class Receiver:
    """An `httpx.MockTransport` handler recording POSTs, answering from a script of status codes."""

    def __init__(self, script: list[int] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.script = list(script or [])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.script.pop(0) if self.script else 200)

    def statuses(self) -> list[dict[str, Any]]:
        out = []
        for request in self.requests:
            for entry in json.loads(request.content)["entry"]:
                for change in entry["changes"]:
                    out.extend(change["value"].get("statuses", []))
        return out


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., tuple[WebhookDispatcher, Receiver]]]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def start(script: list[int] | None = None, **kwargs: Any) -> tuple[WebhookDispatcher, Receiver]:
        receiver = Receiver(script)
        dispatcher = WebhookDispatcher(
            url="http://app.test/v1/webhooks/whatsapp", secret=SECRET, waba_id="waba", metadata=lambda _: META,
            client=httpx.AsyncClient(transport=httpx.MockTransport(receiver)), **kwargs)
        stop = asyncio.Event()
        stops.append((stop, asyncio.create_task(dispatcher.run(stop))))
        return dispatcher, receiver

    yield start
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 5)


def status_event(wamid: str, status: str) -> StatusEvent:
    return StatusEvent("111", status_object(wamid=wamid, status=status, timestamp=1, recipient_id="491"))


async def test_delivery_is_signed_and_in_order(running: Callable[..., tuple[WebhookDispatcher, Receiver]]) -> None:
    dispatcher, receiver = running()
    dispatcher.schedule(0.01, status_event("wamid.A", "sent"))
    dispatcher.schedule(0.08, status_event("wamid.A", "delivered"))
    await wait_until(lambda: dispatcher.stats.delivered == 2)
    assert [s["status"] for s in receiver.statuses()] == ["sent", "delivered"]
    for request in receiver.requests:
        assert request.method == "POST" and request.headers["content-type"] == "application/json"
        assert verify(SECRET, request.content, request.headers[SIGNATURE_HEADER])
    assert dispatcher.pending == 0


async def test_statuses_due_together_are_batched(running: Callable[..., tuple[WebhookDispatcher, Receiver]]) -> None:
    dispatcher, receiver = running(concurrency=1, batch_max=100)
    for i in range(250):
        dispatcher.schedule(0.02, status_event(f"wamid.{i}", "sent"))
    await wait_until(lambda: dispatcher.stats.delivered == 250)
    assert len(receiver.statuses()) == 250
    assert len(receiver.requests) < 250 and all(
        len(json.loads(r.content)["entry"][0]["changes"][0]["value"]["statuses"]) <= 100 for r in receiver.requests)


async def test_failed_posts_are_retried_with_the_same_bytes(
        running: Callable[..., tuple[WebhookDispatcher, Receiver]]) -> None:
    dispatcher, receiver = running([500, 503], retry_base_s=0.01, retry_max_s=0.02)
    dispatcher.schedule(0, ValueEvent("111", inbound_value(wa_id="491", name="Ada", message={"id": "wamid.I"})))
    await wait_until(lambda: dispatcher.stats.delivered == 1)
    assert len(receiver.requests) == 3 and dispatcher.stats.retries == 2
    assert len({r.content for r in receiver.requests}) == 1


async def test_delivery_gives_up_after_max_tries(running: Callable[..., tuple[WebhookDispatcher, Receiver]]) -> None:
    dispatcher, receiver = running([500] * 10, retry_base_s=0.001, retry_max_s=0.002, max_tries=4)
    dispatcher.schedule(0, status_event("wamid.A", "sent"))
    await wait_until(lambda: dispatcher.stats.failed == 1)
    assert len(receiver.requests) == 4 and dispatcher.pending == 0 and dispatcher.stats.last_error == "HTTP 500"


async def test_connection_errors_are_retried() -> None:
    attempts: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        attempts.append(1)
        if len(attempts) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(204)

    dispatcher = WebhookDispatcher(url="http://app.test/hook", secret=SECRET, waba_id="w", metadata=lambda _: META,
                                   client=httpx.AsyncClient(transport=httpx.MockTransport(flaky)),
                                   retry_base_s=0.001, retry_max_s=0.002)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    dispatcher.schedule(0, status_event("wamid.A", "sent"))
    await wait_until(lambda: dispatcher.stats.delivered == 1)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert len(attempts) == 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_real_http_receiver_verifies_signatures() -> None:
    received: list[tuple[bool, dict[str, Any]]] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        raw = await request.body()
        received.append((verify(SECRET, raw, request.headers.get(SIGNATURE_HEADER)), json.loads(raw)))
        return Response(status_code=200)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    server_task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started)
    dispatcher = WebhookDispatcher(url=f"http://127.0.0.1:{port}/hook", secret=SECRET, waba_id="w",
                                   metadata=lambda _: META)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        dispatcher.schedule(0, status_event("wamid.A", "sent"))
        dispatcher.schedule(0.05, status_event("wamid.A", "delivered"))
        await wait_until(lambda: len(received) == 2)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        server.should_exit = True
        await asyncio.wait_for(server_task, 5)
    assert all(ok for ok, _ in received)
    assert [p["entry"][0]["changes"][0]["value"]["statuses"][0]["status"] for _, p in received] == [
        "sent", "delivered"]


def test_encoding_is_compact_utf8() -> None:
    assert encode({"a": "ü", "b": [1]}) == '{"a":"ü","b":[1]}'.encode()
