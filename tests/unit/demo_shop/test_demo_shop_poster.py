"""The demo shop's poster and runner against a fake ingest (httpx.MockTransport), and its settings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from demo_shop.config import Settings
from demo_shop.main import due_count, run_shop
from demo_shop.poster import Poster, retry_after
from scrm_common.backoff import Backoff
from scrm_common.contracts.events import parse_event


class FakeIngest:
    """Answers with the scripted statuses in turn (then 202), remembering every request body."""

    def __init__(self, *script: tuple[int, dict[str, str]]) -> None:
        self.script = list(script)
        self.bodies: list[object] = []
        self.auth: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        self.auth.append(request.headers.get("authorization"))
        status, headers = self.script.pop(0) if self.script else (202, {})
        if status == 202:
            n = len(body["events"]) if isinstance(body, dict) and "events" in body else 1
            return httpx.Response(202, json={"accepted": n})
        return httpx.Response(status, json={"error": "scripted"}, headers=headers)


def poster_for(ingest: FakeIngest, *, batch: int = 100, max_tries: int = 4) -> tuple[Poster, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> bool:
        slept.append(seconds)
        return True

    client = httpx.AsyncClient(transport=httpx.MockTransport(ingest))
    poster = Poster(client, url="http://ingest", api_key="k1", sleep=sleep, batch=batch, max_tries=max_tries,
                    backoff=Backoff(0.1, 1.0))
    return poster, slept


def events(n: int) -> list[dict[str, object]]:
    return [{"event_id": f"e{i}", "type": "feedback.submitted", "occurred_at": "2026-01-01T00:00:00Z",
             "contact": {"external_id": f"c{i}"}, "data": {"rating": 5}} for i in range(n)]


async def test_batches_are_posted_with_the_key_and_a_single_event_as_an_object() -> None:
    ingest = FakeIngest()
    poster, slept = poster_for(ingest, batch=2)
    assert await poster.post(events(5)) == 5
    assert [len(b["events"]) if "events" in b else 1 for b in ingest.bodies] == [2, 2, 1]
    assert ingest.bodies[-1]["event_id"] == "e4"
    assert set(ingest.auth) == {"Bearer k1"}
    assert slept == [] and poster.stats.posted == 5 and poster.stats.by_type["feedback.submitted"] == 5


async def test_429_waits_for_retry_after_and_then_succeeds() -> None:
    ingest = FakeIngest((429, {"Retry-After": "3"}), (429, {"Retry-After": "1"}))
    poster, slept = poster_for(ingest)
    assert await poster.post(events(3)) == 3
    assert slept == [3.0, 1.0]
    assert poster.stats.throttled == 2 and len(ingest.bodies) == 3


async def test_5xx_and_network_errors_are_retried_with_growing_backoff() -> None:
    calls = {"n": 0}
    ingest = FakeIngest((503, {}), (500, {}))

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        return ingest(request)

    slept: list[float] = []

    async def sleep(seconds: float) -> bool:
        slept.append(seconds)
        return True

    poster = Poster(httpx.AsyncClient(transport=httpx.MockTransport(flaky)), url="http://ingest", api_key="k",
                    sleep=sleep, max_tries=5, backoff=Backoff(0.1, 1.0))
    assert await poster.post(events(1)) == 1
    assert len(slept) == 3 and poster.stats.retries == 3
    assert 0.05 <= slept[0] <= 0.1 and 0.1 <= slept[1] <= 0.2 and 0.2 <= slept[2] <= 0.4


async def test_gives_up_after_max_tries_and_counts_the_drop() -> None:
    ingest = FakeIngest(*[(502, {})] * 10)
    poster, slept = poster_for(ingest, max_tries=3)
    assert await poster.post(events(2)) == 0
    assert len(ingest.bodies) == 3 and len(slept) == 2 and poster.stats.dropped == 2


async def test_a_refused_batch_is_not_retried() -> None:
    ingest = FakeIngest((422, {}))
    poster, slept = poster_for(ingest)
    assert await poster.post(events(2)) == 0
    assert len(ingest.bodies) == 1 and slept == [] and poster.stats.dropped == 2


async def test_stopping_during_a_wait_abandons_the_rest() -> None:
    ingest = FakeIngest((429, {"Retry-After": "30"}))

    async def stopped(seconds: float) -> bool:
        return False

    poster = Poster(httpx.AsyncClient(transport=httpx.MockTransport(ingest)), url="http://ingest", api_key="k",
                    sleep=stopped, batch=1)
    assert await poster.post(events(3)) == 0
    assert len(ingest.bodies) == 1


def test_retry_after_parses_seconds_and_dates_within_bounds() -> None:
    assert retry_after("2") == 2.0
    assert retry_after(None) == 1.0
    assert retry_after("garbage") == 1.0
    assert retry_after("9999") == 60.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


def test_due_count_carries_fractions_and_caps_a_backlog() -> None:
    assert due_count(0.0, 5.0, 0.2) == (1, pytest.approx(0.0))
    whole, rest = due_count(0.0, 2.5, 0.2)
    assert whole == 0 and rest == pytest.approx(0.5)
    assert due_count(rest, 2.5, 0.2)[0] == 1
    assert due_count(0.0, 5.0, 3600)[0] == 50  # at most 10 s worth after a stall


async def test_run_shop_posts_valid_events_until_stopped() -> None:
    stop = asyncio.Event()
    received: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        batch = body["events"] if "events" in body else [body]
        received.extend(batch)
        if len(received) >= 50:
            stop.set()
        return httpx.Response(202, json={"accepted": len(batch)})

    settings = Settings(bootstrap_api_key="k", demo_rate=1000, demo_seed=1, ingest_url="http://ingest")
    poster = await run_shop(settings, stop, transport=httpx.MockTransport(handler))
    assert len(received) >= 50 and poster.stats.posted == len(received)
    for event in received:
        parse_event(event)


def test_settings_build_the_ingest_url_from_the_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SCRM_INGEST_URL", "SCRM_INGEST_PORT", "SCRM_BOOTSTRAP_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("SCRM_BOOTSTRAP_API_KEY", "k")
    assert Settings().ingest_url == "http://127.0.0.1:8080"
    monkeypatch.setenv("SCRM_INGEST_PORT", "9123")
    assert Settings().ingest_url == "http://127.0.0.1:9123"
    monkeypatch.setenv("SCRM_INGEST_URL", "http://ingest.local:80/")
    assert Settings().ingest_url == "http://ingest.local:80"
    assert Settings().demo_rate == 5.0


def test_the_process_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    from scrm_stack.stack import free_port

    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRM_")}
    env.update({"SCRM_BOOTSTRAP_API_KEY": "k", "SCRM_INGEST_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen([sys.executable, "-m", "demo_shop.main"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = json.loads(proc.stderr.readline())  # blocks until the loop has started; every log line is JSON
        assert first["service"] == "demo-shop" and first["msg"].startswith("posting")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        rest = [json.loads(line) for line in proc.stderr.read().splitlines()]
        assert any(doc["msg"].startswith("stopped after") for doc in rest)
        assert proc.stdout.read() == b""  # nothing but JSON lines: no plain text on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
