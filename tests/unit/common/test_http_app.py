"""scrm_common.http.service_app: correlation ids, control characters, 500s, the access log and an OpenAPI
description that documents every error answer in the documented body."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Query
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from scrm_common.http import (
    ApiError,
    ApiKey,
    RequestContext,
    documented_body,
    error_responses,
    ops_router,
    service_app,
)
from scrm_common.observability.logging import ACCESS_LOGGER, JsonFormatter


class Thing(BaseModel):
    name: str


def _app() -> FastAPI:
    app = service_app("scrm test", "0.0.1")

    @app.get("/v1/things/{name}", response_model=Thing, responses=error_responses(403))
    async def thing(name: str, key: ApiKey, n: Annotated[int, Query(ge=1)] = 1) -> Thing:
        if key == "reader":
            raise ApiError(403, "read_only_key", "this API key may only read")
        return Thing(name=name * n)

    @app.get("/v1/search")
    async def search(q: str = "") -> dict[str, str]:
        return {"q": q}

    @app.get("/v1/bug")
    async def bug() -> None:
        raise ZeroDivisionError("a bug, not a client error")

    async def broken_dependency() -> None:
        raise ConnectionResetError("database went away")

    @app.get("/v1/broken", dependencies=[Depends(broken_dependency)])
    async def broken() -> None:
        return None

    @app.post("/v1/raw", openapi_extra=documented_body(Thing | list[Thing], description="a thing or things"))
    async def raw() -> dict[str, int]:
        return {"ok": 1}

    @app.put("/v1/things", response_model=Thing)
    async def put_thing(body: Thing) -> Thing:
        return body

    @app.get("/v1/text", response_class=PlainTextResponse, responses=error_responses(403))
    async def text() -> str:
        return "plain"

    async def not_ready() -> bool:
        return False

    app.include_router(ops_router(CollectorRegistry(), not_ready))

    return app


@pytest.fixture
def logged() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Every log line written so far in the test (the access log included), parsed from the JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    root.addHandler(handler)
    access = logging.getLogger(ACCESS_LOGGER)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        access.setLevel(old_level)


async def _call(method: str, path: str, **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.request(method, path, **kwargs)


KEY = {"Authorization": "Bearer shop"}


@pytest.mark.parametrize("path", ["/v1/bug", "/v1/broken"])
async def test_a_500_names_its_correlation_id_in_body_header_and_log_line(path: str, logged) -> None:
    resp = await _call("GET", path)
    assert resp.status_code == 500
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    correlation_id = resp.headers["x-correlation-id"]
    assert body == {"error": {"code": "internal_error", "message": "internal error; retry later",
                              "correlation_id": correlation_id}}
    lines = logged()
    failures = [line for line in lines if line["level"] == "error" and "exc" in line]
    assert len(failures) == 1, lines
    assert failures[0]["correlation_id"] == correlation_id
    assert failures[0]["msg"] == f"unhandled error on GET {path}"
    assert "Error" in failures[0]["exc"] and "Traceback" in failures[0]["exc"]
    assert "Traceback" not in resp.text


@pytest.mark.parametrize(("sent", "kept"), [("order-42/retry", True), ("x" * 128, True), ("x" * 129, False),
                                            ("tab\there", False), ("", False), ("ünïcode", False)])
async def test_a_sane_correlation_id_of_the_request_is_kept(sent: str, kept: bool) -> None:
    resp = await _call("GET", "/v1/bug", headers={"X-Correlation-Id": sent.encode()})
    got = resp.headers["x-correlation-id"]
    assert got == resp.json()["error"]["correlation_id"]
    assert (got == sent) is kept
    if not kept:
        assert len(got) == 32 and got.isalnum()


async def test_every_answer_carries_a_correlation_id_header() -> None:
    resp = await _call("GET", "/v1/things/a", headers=KEY | {"X-Correlation-Id": "c-1"})
    assert (resp.status_code, resp.headers["x-correlation-id"]) == (200, "c-1")


@pytest.mark.parametrize(("method", "path", "headers", "status", "code"), [
    ("GET", "/v1/things/a", {}, 401, "unauthorized"),
    ("GET", "/v1/things/a", {"Authorization": "Basic x"}, 401, "unauthorized"),
    ("GET", "/v1/things/a", {"Authorization": "Bearer "}, 401, "unauthorized"),
    ("GET", "/v1/things/a", {"Authorization": "Bearer reader"}, 403, "read_only_key"),
    ("GET", "/v1/things/a?n=0", KEY, 422, "invalid_request"),
    ("GET", "/v1/nowhere", KEY, 404, "not_found"),
    ("DELETE", "/v1/things/a", KEY, 405, "method_not_allowed"),
    # a control character in a path or a query parameter never reaches a route (nor the database)
    ("GET", "/v1/things/a%00b", KEY, 404, "not_found"),
    ("GET", "/v1/things/%1F", KEY, 404, "not_found"),
    ("GET", "/v1/things/%C2%85", KEY, 404, "not_found"),  # C1 control NEL
    ("GET", "/v1/nowhere%7F", KEY, 404, "not_found"),
    ("GET", "/v1/search?q=%00", KEY, 422, "invalid_request"),
    ("GET", "/v1/search?q=a%0Bb", KEY, 422, "invalid_request"),
    ("GET", "/v1/search?x%00=1", KEY, 422, "invalid_request"),
])
async def test_every_error_is_the_documented_json_body(method: str, path: str, headers: dict[str, str], status: int,
                                                       code: str) -> None:
    resp = await _call(method, path, headers=headers)
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) <= {"error", "errors"}
    assert body["error"]["code"] == code and body["error"]["message"]
    if status == 422:
        assert body["errors"] and all(e["field"].startswith("query.") and e["reason"] for e in body["errors"])
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("body", "field", "reason"), [
    (b'{"name": "\xff"}', "body", "not UTF-8 text (byte 10)"),
    (b"{", "body.1", "JSON decode error"),
    (b'{"name": 1}', "body.name", "Input should be a valid string"),
])
async def test_a_body_that_cannot_be_read_is_a_422_naming_the_body(body: bytes, field: str, reason: str) -> None:
    resp = await _call("PUT", "/v1/things", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 422
    assert resp.json() == {"error": {"code": "invalid_request", "message": "invalid request"},
                           "errors": [{"index": None, "field": field, "reason": reason}]}


async def test_operations_endpoints_answer_typed_bodies() -> None:
    assert (await _call("GET", "/healthz")).json() == {"status": "ok"}
    not_ready = await _call("GET", "/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "not_ready"
    metrics = await _call("GET", "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    spec = _openapi()["paths"]
    assert set(spec["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert spec["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Health"}


async def test_the_control_character_refusal_names_the_parameter() -> None:
    resp = await _call("GET", "/v1/search?ok=1&contact=cust%00-1", headers=KEY)
    assert resp.json()["errors"] == [{"index": None, "field": "query.contact", "reason": "contains a control character"}]


async def test_an_app_with_its_own_error_body_can_keep_only_the_correlation_and_the_log() -> None:
    app = FastAPI()

    @app.get("/echo")
    async def echo(q: str = "") -> dict[str, str]:
        return {"q": q}

    app.add_middleware(RequestContext, refuse_control_characters=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.get("/echo?q=%00")
    assert (resp.status_code, resp.json()) == (200, {"q": "\x00"})
    assert len(resp.headers["x-correlation-id"]) == 32


@pytest.mark.parametrize(("query", "text"), [("M%C3%BCller%20%2B49%20%F0%9F%A6%84", "Müller +49 🦄"),
                                             ("a%09b%0Ac%0Dd", "a\tb\nc\rd")])  # tab, LF, CR: plain text
async def test_plain_text_passes(query: str, text: str) -> None:
    resp = await _call("GET", f"/v1/search?q={query}", headers=KEY)
    assert resp.json() == {"q": text}


async def test_the_access_log_is_one_json_line_per_request_with_the_route_not_the_ids(logged) -> None:
    await _call("GET", "/v1/things/secret-customer?n=2", headers=KEY | {"X-Correlation-Id": "c-7"})
    await _call("GET", "/v1/nowhere", headers=KEY)
    await _call("GET", "/v1/bug")
    await _call("GET", "/readyz")
    access = [line for line in logged() if line["logger"] == ACCESS_LOGGER]
    assert [(a["method"], a["path"], a["status"], a["level"]) for a in access] == [
        ("GET", "/v1/things/{name}", 200, "info"), ("GET", "/v1/nowhere", 404, "warning"),
        ("GET", "/v1/bug", 500, "error"), ("GET", "/readyz", 503, "info")]
    assert all(isinstance(a["duration_ms"], float) and a["duration_ms"] >= 0 for a in access)
    assert access[0]["correlation_id"] == "c-7"
    assert "secret-customer" not in json.dumps(access)


def _openapi() -> dict[str, Any]:
    return _app().openapi()


def test_every_operation_documents_its_errors_as_the_error_body() -> None:
    spec = _openapi()
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "500" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == error_ref, (method, path, status)
    thing = spec["paths"]["/v1/things/{name}"]["get"]
    assert set(thing["responses"]) == {"200", "401", "403", "404", "422", "500"}
    assert set(spec["paths"]["/v1/bug"]["get"]["responses"]) == {"200", "500"}
    text = spec["paths"]["/v1/text"]["get"]["responses"]
    assert set(text["200"]["content"]) == {"text/plain"} and set(text["403"]["content"]) == {"application/json"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_protected_routes_declare_the_bearer_scheme() -> None:
    spec = _openapi()
    assert spec["components"]["securitySchemes"]["TenantApiKey"] == {
        "type": "http", "scheme": "bearer", "description": "A tenant API key: `Authorization: Bearer <key>`."}
    assert spec["paths"]["/v1/things/{name}"]["get"]["security"] == [{"TenantApiKey": []}]
    assert "security" not in spec["paths"]["/v1/search"]["get"]


def test_a_body_the_route_reads_itself_is_documented_with_its_components() -> None:
    spec = _openapi()
    body = spec["paths"]["/v1/raw"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/Thing"} in schema["anyOf"]
    assert spec["components"]["schemas"]["Thing"]["required"] == ["name"]
    assert "x-scrm-components" not in spec["paths"]["/v1/raw"]["post"]
    assert spec["paths"]["/v1/raw"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"}


async def test_docs_are_served_from_local_assets() -> None:
    for page, asset in [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]:
        html = (await _call("GET", page)).text
        assert f"/static-offline-docs/{asset}" in html
        assert "cdn." not in html
        resp = await _call("GET", f"/static-offline-docs/{asset}")
        assert resp.status_code == 200 and len(resp.content) > 100_000
