"""Issue 5 §5: an oversized body is drained before its 413, within a byte and a time bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request

from ingest.adapters import http

LIMIT = 1024


def _request(chunks: Callable[[int], bytes | None], *, declared: int | None = None) -> tuple[Request, list[int]]:
    """A request whose body arrives as `chunks(i)` (None: the client stops sending but keeps the connection)."""
    read: list[int] = []

    async def receive() -> dict[str, Any]:
        i = len(read)
        body = chunks(i)
        if body is None:
            await asyncio.sleep(3600)
        read.append(len(body or b""))
        return {"type": "http.request", "body": body, "more_body": body != b""}

    headers = [(b"content-length", str(declared).encode())] if declared is not None else []
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive), read


@pytest.mark.parametrize("declared", [None, 40 * LIMIT])
async def test_an_oversized_body_is_read_to_its_end_before_the_413(declared):
    request, read = _request(lambda i: b"x" * LIMIT if i < 40 else b"", declared=declared)
    with pytest.raises(http._TooLarge):
        await http._read_limited(request, LIMIT)
    assert sum(read) == 40 * LIMIT and read[-1] == 0  # everything the client sent was consumed


async def test_a_body_within_the_limit_is_returned_whole():
    request, _ = _request(lambda i: b"ab" if i < 3 else b"")
    assert await http._read_limited(request, LIMIT) == b"ababab"


async def test_draining_stops_at_the_byte_bound(monkeypatch):
    monkeypatch.setattr(http, "DRAIN_MAX_BYTES", 8 * LIMIT)
    request, read = _request(lambda _i: b"x" * LIMIT)  # a client that never stops
    with pytest.raises(http._TooLarge):
        await http._read_limited(request, LIMIT)
    assert 8 * LIMIT < sum(read) <= 9 * LIMIT


@pytest.mark.parametrize("declared", [None, 100 * LIMIT])
async def test_draining_stops_at_the_time_bound(monkeypatch, declared):
    monkeypatch.setattr(http, "DRAIN_MAX_SECONDS", 0.2)
    request, _ = _request(lambda i: b"x" * (2 * LIMIT) if i == 0 else None, declared=declared)  # then stalls
    started = time.monotonic()
    with pytest.raises(http._TooLarge):  # not TimeoutError: the drain gave up by itself
        await asyncio.wait_for(http._read_limited(request, LIMIT), timeout=5)
    assert time.monotonic() - started < 5
