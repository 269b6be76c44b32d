"""scrm_common.http.install_error_handlers: every 4xx/5xx in the documented shape (CONTRACT §2)."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel, field_validator

from scrm_common.http import ApiError, error_response, field_error, install_error_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/missing")
    async def missing() -> None:
        raise HTTPException(404, detail="contact not found")

    @app.get("/auth")
    async def auth() -> None:
        raise HTTPException(401, detail="missing bearer API key", headers={"WWW-Authenticate": "Bearer"})

    @app.get("/fields")
    async def fields() -> None:
        raise HTTPException(422, detail=[{"field": "query.from", "reason": "'from' must not be after 'to'"}])

    @app.get("/typed")
    async def typed(n: Annotated[int, Query(ge=1)]) -> int:
        return n

    @app.get("/busy")
    async def busy() -> None:
        raise HTTPException(503, detail="key service unavailable")

    @app.get("/bug")
    async def bug() -> None:
        raise ZeroDivisionError("a bug, not a client error")

    return app


async def _get(path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://t") as client:
        return await client.get(path)


@pytest.mark.parametrize(("path", "status", "body"), [
    ("/missing", 404, {"error": {"code": "not_found", "message": "contact not found"}}),
    ("/auth", 401, {"error": {"code": "unauthorized", "message": "missing bearer API key"}}),
    ("/busy", 503, {"error": {"code": "unavailable", "message": "key service unavailable"}}),
    ("/nowhere", 404, {"error": {"code": "not_found", "message": "Not Found"}}),
    ("/fields", 422, {"error": {"code": "invalid_request", "message": "invalid request"},
                      "errors": [{"index": None, "field": "query.from", "reason": "'from' must not be after 'to'"}]}),
])
async def test_http_errors_have_the_documented_shape(path, status, body):
    resp = await _get(path)
    assert (resp.status_code, resp.json()) == (status, body)


async def test_headers_of_an_error_are_kept():
    assert (await _get("/auth")).headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("query", "field"), [("", "query.n"), ("?n=0", "query.n"), ("?n=x", "query.n")])
async def test_validation_errors_name_the_field_at_fault(query, field):
    resp = await _get("/typed" + query)
    body = resp.json()
    assert resp.status_code == 422
    assert body["error"] == {"code": "invalid_request", "message": "invalid request"}
    assert [e["field"] for e in body["errors"]] == [field]
    assert body["errors"][0]["reason"]


@pytest.mark.parametrize(("status", "code"), [(409, "conflict"), (413, "body_too_large"), (418, "error")])
def test_error_response_defaults_its_code_from_the_status(status, code):
    resp = error_response(status, "m")
    assert resp.status_code == status
    assert resp.body == f'{{"error":{{"code":"{code}","message":"m"}}}}'.encode()


def test_field_error_carries_a_batch_index():
    assert field_error("events.0.type", "unknown", index=0) == {"index": 0, "field": "events.0.type", "reason": "unknown"}


async def test_an_unexpected_exception_is_a_json_500_without_the_traceback() -> None:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/bug")
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"error": {"code": "internal_error", "message": "internal error; retry later"}}
    assert "ZeroDivisionError" not in resp.text


async def test_an_api_error_keeps_its_code_fields_and_headers() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/limited")
    async def limited() -> None:
        raise ApiError(429, None, "over the tenant's rate", headers={"Retry-After": "3"},
                       errors=[field_error("events", "too many", index=None)])

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.get("/limited")
    assert (resp.status_code, resp.headers["retry-after"]) == (429, "3")
    assert resp.json() == {"error": {"code": "rate_limited", "message": "over the tenant's rate"},
                           "errors": [{"index": None, "field": "events", "reason": "too many"}]}


class _Body(BaseModel):
    when: int

    @field_validator("when")
    @classmethod
    def _in_range(cls, value: int) -> int:
        if value > 10:
            raise ValueError("must be at most 10")
        return value


async def test_a_rule_of_a_body_model_gives_its_own_words_as_the_reason():
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/body")
    async def body(payload: _Body) -> int:
        return payload.when

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.post("/body", json={"when": 11})
    assert resp.status_code == 422
    assert resp.json()["errors"] == [{"index": None, "field": "body.when", "reason": "must be at most 10"}]
