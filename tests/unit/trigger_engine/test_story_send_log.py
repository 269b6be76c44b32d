"""The story's client of the sender's send log (httpx.MockTransport as the sender): one list request with the
caller's key, single lookups for decided keys the list lacks, lenient records, and 'unavailable' — never an
exception the route would turn into a 500 — for a sender that is down, slow or answers nonsense."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from trigger_engine.adapters.send_log import MAX_SINGLE_LOOKUPS, SendLog, SendLogUnavailable, logged
from trigger_engine.domain.story import Logged

AUTH = "Bearer scrm_read_key"


def row(key: str, **fields: Any) -> dict[str, Any]:
    """A message as today's sender lists it (without the gate's fields unless given)."""
    return {"idempotency_key": key, "account_id": "100", "flow": "welcome", "category": "marketing",
            "contact_key": "cust-1", "to_phone": "+4915112345678", "state": "sent", "attempts": 1,
            "error_code": None, "error_reason": None, "queued_at": "2026-12-01T21:30:01Z",
            "sent_at": "2026-12-01T21:30:02.500000+00:00", **fields}


def sender(handler: Callable[[httpx.Request], httpx.Response], timeout: float = 2.0) -> SendLog:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return SendLog("http://sender:8082/", client=client, timeout_seconds=timeout)


async def test_one_list_request_with_the_callers_key_finds_the_decided_messages() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"tenant": "demo", "messages": [
            row("w1", state="queued", rule="R-S4", deferred_until="2026-12-02T07:00:00Z",
                error_reason="quiet hours …"),
            row("someone-elses"), row("w1", state="sent")]})

    found = await sender(handler).records("cust-1", {"w1"}, authorization=AUTH)
    assert len(seen) == 1
    assert seen[0].url.path == "/v1/messages"
    assert dict(seen[0].url.params) == {"contact": "cust-1", "limit": "1000"}
    assert seen[0].headers["authorization"] == AUTH
    assert set(found) == {"w1"}
    assert found["w1"].state == "queued" and found["w1"].rule == "R-S4"  # newest first: the first row counts
    assert found["w1"].deferred_until == datetime(2026, 12, 2, 7, tzinfo=UTC)


async def test_keys_the_list_lacks_are_asked_one_by_one_and_a_404_is_not_known() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/messages":
            return httpx.Response(200, json={"tenant": "demo", "messages": []})
        asked.append(request.url.raw_path.decode())
        if request.url.path.endswith("merged"):
            return httpx.Response(200, json=row("welcome|t|old/merged"))
        return httpx.Response(404, json={"error": {"code": "not_found"}})

    found = await sender(handler).records("cust-1", {"welcome|t|old/merged", "unknown"}, authorization=AUTH)
    assert set(found) == {"welcome|t|old/merged"}
    assert sorted(asked) == ["/v1/messages/unknown", "/v1/messages/welcome%7Ct%7Cold%2Fmerged"]


async def test_single_lookups_are_bounded() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        if request.url.path == "/v1/messages":
            return httpx.Response(200, json={"messages": []})
        count += 1
        return httpx.Response(404)

    await sender(handler).records("c", {f"k{i}" for i in range(MAX_SINGLE_LOOKUPS + 30)}, authorization=AUTH)
    assert count == MAX_SINGLE_LOOKUPS


async def test_no_keys_asks_nothing() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("asked")

    assert await sender(handler).records("c", set(), authorization=AUTH) == {}


@pytest.mark.parametrize("answer", [
    httpx.Response(500, json={"error": "boom"}),
    httpx.Response(401, json={"error": {"code": "unauthorized"}}),
    httpx.Response(200, content=b"<html>not json</html>"),
    httpx.Response(200, json={"tenant": "demo"}),
    httpx.Response(200, json=["a list"]),
])
async def test_an_answer_that_is_no_send_log_makes_it_unavailable(answer: httpx.Response) -> None:
    with pytest.raises(SendLogUnavailable):
        await sender(lambda _: answer).records("c", {"k"}, authorization=AUTH)


async def test_a_sender_that_cannot_be_reached_is_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(SendLogUnavailable):
        await sender(handler).records("c", {"k"}, authorization=AUTH)


async def test_a_sender_slower_than_the_bound_is_unavailable_in_time() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)  # the sender hangs; the bound must cut it
        return httpx.Response(200, json={"messages": []})

    log = SendLog("http://sender", client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
                  timeout_seconds=0.2)
    started = asyncio.get_running_loop().time()
    with pytest.raises(SendLogUnavailable):
        await log.records("c", {"k"}, authorization=AUTH)
    assert asyncio.get_running_loop().time() - started < 5


def test_records_are_read_leniently() -> None:
    assert logged({"state": "sent"}) is None and logged("text") is None and logged({"idempotency_key": ""}) is None
    record = logged({"idempotency_key": "k", "state": 3, "rule": None, "error_code": True, "queued_at": "yesterday",
                     "sent_at": "2026-12-01T22:30:00+01:00", "delivered_at": "2026-12-01T21:31:00",
                     "read_at": None, "suppressed_at": 5, "future_field": {"x": 1}})
    assert record == Logged("k", sent_at=datetime(2026, 12, 1, 21, 30, tzinfo=UTC),
                            delivered_at=datetime(2026, 12, 1, 21, 31, tzinfo=UTC))
    assert record is not None and record.sent_at is not None and record.sent_at.tzinfo == UTC
