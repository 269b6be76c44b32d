"""Every service's app refuses a body over its limit (`service_app(max_body_bytes=...)`) with 413
`body_too_large` and `Connection: close` before any parser or route holds it: by its Content-Length at once,
a chunked one as soon as the bytes streamed in pass the limit; the rest is drained first so that a client
writing its whole body before reading sees the answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from scrm_common import http
from scrm_common.http import DEFAULT_MAX_BODY_BYTES, ApiError, json_body, service_app

LIMIT = 4096


class Thing(BaseModel):
    name: str


def _app(limit: int = LIMIT) -> tuple[FastAPI, list[str], list[int]]:
    """An app whose routes record that they ran; and the count of 413s its hook saw."""
    ran: list[str] = []
    refused: list[int] = []
    app = service_app("limits", "0", max_body_bytes=limit, on_body_too_large=lambda: refused.append(413))

    @app.post("/v1/parsed")
    async def parsed(thing: Thing) -> dict[str, int]:
        ran.append("parsed")
        return {"length": len(thing.name)}

    @app.post("/v1/streamed")
    async def streamed(request: Request) -> dict[str, int]:
        ran.append("streamed")
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"length": size}

    return app, ran, refused


def _body(size: int) -> bytes:
    return b'{"name": "' + b"a" * (size - 12) + b'"}'


async def _chunks(raw: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    """`raw` in pieces, without a Content-Length (sent chunked)."""
    for i in range(0, len(raw), size):
        yield raw[i:i + size]


async def _post(app: FastAPI, path: str, content: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.post(path, content=content, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("path", ["/v1/parsed", "/v1/streamed"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_limit_is_a_413_no_route_reads(path: str, framing: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    app, ran, refused = _app()
    raw = _body(LIMIT + 1)
    resp = await _post(app, path, raw if framing == "content-length" else _chunks(raw))
    assert resp.status_code == 413, resp.text
    assert resp.json() == {"error": {"code": "body_too_large", "message": f"request body over {LIMIT} bytes"}}
    assert resp.headers["connection"] == "close"
    assert resp.headers["x-correlation-id"]
    assert refused == [413]
    # A route that streams the body may have started; a parsed body never reaches its route.
    assert "parsed" not in ran
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # a client's fault, not an error


@pytest.mark.parametrize("path", ["/v1/parsed", "/v1/streamed"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_of_exactly_the_limit_passes(path: str, framing: str) -> None:
    app, _, refused = _app()
    raw = _body(LIMIT)
    resp = await _post(app, path, raw if framing == "content-length" else _chunks(raw))
    assert resp.status_code == 200, resp.text
    assert resp.json()["length"] == (LIMIT - 12 if path == "/v1/parsed" else LIMIT)
    assert refused == []


def test_services_take_a_mebibyte_by_default() -> None:
    assert DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    middleware = next(m for m in service_app("default", "0").user_middleware if m.cls is http.RequestContext)
    assert middleware.kwargs["max_body_bytes"] == DEFAULT_MAX_BODY_BYTES


async def _asgi(app: FastAPI, chunks: list[bytes], declared: int | None) -> tuple[int, int, dict[bytes, bytes]]:
    """Call `app` with a body arriving as `chunks`: the status, how many chunks it read, the headers."""
    read = 0

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        if read > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {"type": "http", "http_version": "1.1", "method": "POST", "path": "/v1/parsed", "raw_path": b"/v1/parsed",
             "root_path": "", "scheme": "http", "query_string": b"", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("svc", 80)}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], min(read, len(chunks)), dict(start["headers"])


@pytest.mark.parametrize("declared", [None, 40 * LIMIT])
async def test_an_oversized_body_is_drained_before_the_413(declared: int | None) -> None:
    app, _, _ = _app()
    chunks = [b"x" * LIMIT] * 40
    status, read, headers = await _asgi(app, chunks, declared)
    assert (status, read) == (413, 40)
    assert headers[b"connection"] == b"close"


async def test_draining_stops_at_its_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "DRAIN_MAX_BYTES", 10 * LIMIT)
    app, _, _ = _app()
    status, read, _ = await _asgi(app, [b"x" * LIMIT] * 1000, None)
    assert status == 413
    assert read <= 12


def _json_app() -> FastAPI:
    app = service_app("json body", "0")

    async def caller(request: Request) -> None:
        if request.headers.get("authorization") != "Bearer ok":
            raise ApiError(401, "unauthorized", "who are you")

    @app.post("/v1/things", dependencies=[Depends(caller)])
    async def things(request: Request) -> dict[str, str]:
        return {"name": (await json_body(request, Thing, max_bytes=100)).name}

    return app


@pytest.mark.parametrize(("headers", "content", "status", "fields"), [
    ({}, b"{broken", 401, None),
    ({}, b'{"name": 5}', 401, None),
    ({"Authorization": "Bearer ok"}, b'{"name": "pen"}', 200, None),
    ({"Authorization": "Bearer ok"}, b"{broken", 422, ["body"]),
    ({"Authorization": "Bearer ok"}, b'{"name": 5, "name": "x"}', 422, ["body.name"]),  # said twice
    ({"Authorization": "Bearer ok"}, b'{"name": "a\\u0000b"}', 422, ["body.name"]),
    ({"Authorization": "Bearer ok"}, b'{"name": 5}', 422, ["body.name"]),
    ({"Authorization": "Bearer ok"}, b"[]", 422, ["body"]),
    ({"Authorization": "Bearer ok"}, b'{"name": "' + b"a" * 100 + b'"}', 413, None),
])
async def test_a_body_read_after_auth(headers: dict[str, str], content: bytes, status: int,
                                      fields: list[str] | None) -> None:
    transport = httpx.ASGITransport(app=_json_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        resp = await client.post("/v1/things", content=content, headers=headers)
    assert resp.status_code == status, resp.text
    if fields is not None:
        assert [e["field"] for e in resp.json()["errors"]] == fields
    if status == 200:
        assert resp.json() == {"name": "pen"}
