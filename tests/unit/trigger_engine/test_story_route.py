"""`GET /v1/contacts/{contact}/decisions` tells the whole story: the decisions as before (newest first) plus the
story (oldest first) and a summary per decided message, the sender asked with the caller's own key — and a
sender that does not answer is `send_log: unavailable`, not a 500. (The decision rows come from a stand-in
repository here; the real route over PostgreSQL is tested in tests/integration, the sender in e2e.)"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import HTTPException, Request

from scrm_common.http import Principal, service_app
from trigger_engine.adapters.http import build_router
from trigger_engine.adapters.send_log import SendLog

T0 = datetime(2026, 12, 1, 21, 30, tzinfo=UTC)


class Keys:
    """Any bearer key is a `read` key of tenant `demo`."""

    def require(self, roles: tuple[str, ...]) -> Callable[[Request], Awaitable[Principal]]:
        async def dependency(request: Request) -> Principal:
            if not request.headers.get("authorization", "").startswith("Bearer "):
                raise HTTPException(401, detail="no key")
            return Principal("demo", role="read")
        return dependency


class Engine:
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[None]:
        yield None


class Repository:
    """The person's decision rows, newest first, as `EngineRepository.decisions_for` returns them."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def person_for(self, conn: Any, tenant: str, aliases: Any) -> str | None:
        return "cust-1"

    async def decisions_for(self, conn: Any, tenant: str, person: str, limit: int) -> list[dict[str, Any]]:
        return self.rows[:limit]


ROWS = [
    {"event_id": "ev-2", "event_type": "payment.succeeded", "flow": "order_confirmation", "outcome": "send",
     "reason": None, "idempotency_key": "oc-1", "decided_at": T0 + timedelta(minutes=1)},
    {"event_id": "ev-1", "event_type": "contact.created", "flow": "welcome", "outcome": "send", "reason": None,
     "idempotency_key": "w-1", "decided_at": T0},
]


async def get(rows: list[dict[str, Any]], send_log: SendLog | None) -> httpx.Response:
    app = service_app("trigger-engine under test", "0")
    app.include_router(build_router(engine=Engine(), repository=Repository(rows), keys=Keys(),  # type: ignore[arg-type]
                                    send_log=send_log))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://te") as http:
        return await http.get("/v1/contacts/+4915112345678/decisions", headers={"Authorization": "Bearer k-read"})


def sender(handler: Callable[[httpx.Request], httpx.Response]) -> SendLog:
    return SendLog("http://sender", client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))


async def test_the_story_merges_the_send_log_asked_with_the_callers_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"tenant": "demo", "messages": [
            {"idempotency_key": "oc-1", "state": "sent", "queued_at": (T0 + timedelta(minutes=1)).isoformat(),
             "sent_at": (T0 + timedelta(minutes=1, seconds=1)).isoformat()},
            {"idempotency_key": "w-1", "state": "suppressed", "rule": "WITHDRAWN", "error_reason": "purchased",
             "queued_at": T0.isoformat(), "suppressed_at": (T0 + timedelta(minutes=2)).isoformat()}]})

    resp = await get(ROWS, sender(handler))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert seen[0].headers["authorization"] == "Bearer k-read"
    assert dict(seen[0].url.params) == {"contact": "cust-1", "limit": "1000"}
    assert [d["idempotency_key"] for d in body["decisions"]] == ["oc-1", "w-1"]  # newest first, as before
    assert body["send_log"] == "ok"
    assert [(line["idempotency_key"], line["step"]) for line in body["story"]] == [
        ("w-1", "decided"), ("w-1", "queued"), ("oc-1", "decided"), ("oc-1", "queued"), ("oc-1", "sent"),
        ("w-1", "suppressed")]
    summaries = {m["idempotency_key"]: m for m in body["messages"]}
    assert (summaries["oc-1"]["status"], summaries["oc-1"]["reached"]) == ("reached", True)
    assert (summaries["w-1"]["reached"], summaries["w-1"]["stopped_by"], summaries["w-1"]["reason"]) == \
        (False, "WITHDRAWN", "purchased")


async def test_a_sender_that_is_down_leaves_the_decisions_and_says_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    resp = await get(ROWS, sender(handler))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["send_log"] == "unavailable" and len(body["decisions"]) == 2
    assert {m["status"] for m in body["messages"]} == {"unknown"}
    assert [line["step"] for line in body["story"]] == ["decided", "decided"]


async def test_no_send_log_configured_is_unavailable_and_no_sends_need_none() -> None:
    assert (await get(ROWS, None)).json()["send_log"] == "unavailable"
    suppressed = [{**ROWS[1], "outcome": "suppressed", "reason": "flow disabled"}]

    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the sender was asked about no message")

    body = (await get(suppressed, sender(handler))).json()
    assert body["send_log"] == "not_needed"
    assert (body["messages"][0]["status"], body["messages"][0]["reason"]) == ("stopped", "flow disabled")


async def test_the_openapi_documents_the_story() -> None:
    app = service_app("trigger-engine under test", "0")
    app.include_router(build_router(engine=Engine(), repository=Repository([]), keys=Keys()))  # type: ignore[arg-type]
    schemas = app.openapi()["components"]["schemas"]
    read = schemas["DecisionsRead"]["properties"]
    assert {"decisions", "story", "messages", "send_log"} <= set(read)
    assert {"reached", "stopped_by", "pending", "reason"} <= set(schemas["MessageStoryRead"]["properties"])
