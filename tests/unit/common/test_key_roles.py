"""Roles on every route: `KeyIntrospection.require` answers 401/403 in the error body, presents the internal
token to ingest, and writes the roles into the OpenAPI (`x-scrm-roles`)."""


import json
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends

from scrm_common.http import (
    ADMIN,
    INTERNAL_TOKEN_HEADER,
    READ,
    ROLES_EXTENSION,
    KeyIntrospection,
    Principal,
    service_app,
)

KEYS = {"k-read": ("acme", "read"), "k-admin": ("acme", "admin"), "k-events": ("acme", "events")}


def _ingest(seen: list[str]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get(INTERNAL_TOKEN_HEADER, ""))
        if request.headers.get(INTERNAL_TOKEN_HEADER) != "internal-1":
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no"}})
        key = json.loads(request.content)["api_key"]
        if key == "k-disabled":
            return httpx.Response(404, json={"error": {"code": "tenant_disabled", "message": "disabled"}})
        if key not in KEYS:
            return httpx.Response(404, json={"error": {"code": "unknown_key", "message": "no"}})
        tenant, role = KEYS[key]
        return httpx.Response(200, json={"tenant": tenant, "role": role, "key_id": "id-" + key})
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _app(token: str, seen: list[str]):
    keys = KeyIntrospection("http://ingest", internal_token=token, ttl_seconds=30, client=_ingest(seen))
    app = service_app("t", "0")

    @app.get("/v1/things")
    async def things(p: Annotated[Principal, Depends(keys.require(READ))]) -> dict[str, str]:
        return {"tenant": p.tenant, "key_id": p.key_id}

    @app.put("/v1/things")
    async def change(p: Annotated[Principal, Depends(keys.require(ADMIN))]) -> dict[str, str]:
        return {"tenant": p.tenant}

    router = APIRouter()

    @router.delete("/v1/things/{name}")
    async def remove(name: str, p: Annotated[Principal, Depends(keys.require(ADMIN))]) -> dict[str, str]:
        return {"tenant": p.tenant, "name": name}

    app.include_router(router, prefix="/x")
    return app


@pytest.mark.parametrize(("method", "key", "status"), [
    ("GET", "k-read", 200), ("GET", "k-admin", 200), ("GET", "k-events", 403), ("GET", "nobody", 401),
    ("PUT", "k-admin", 200), ("PUT", "k-read", 403), ("PUT", "k-events", 403), ("PUT", "nobody", 401),
])
async def test_each_role_gets_what_it_may(method: str, key: str, status: int) -> None:
    seen: list[str] = []
    app = _app("internal-1", seen)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.request(method, "/v1/things", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == status, resp.text
    assert seen == ["internal-1"]
    if status == 403:
        assert resp.json()["error"]["code"] == "forbidden"
        assert "needs role" in resp.json()["error"]["message"]
    if status == 200 and method == "GET":
        assert resp.json() == {"tenant": "acme", "key_id": "id-" + key}


async def test_a_wrong_internal_token_is_a_503_not_a_401_for_the_caller() -> None:
    app = _app("wrong", [])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        resp = await client.get("/v1/things", headers={"Authorization": "Bearer k-read"})
    assert resp.status_code == 503


def test_openapi_names_the_roles_of_each_operation() -> None:
    paths = _app("internal-1", []).openapi()["paths"]
    assert paths["/v1/things"]["get"][ROLES_EXTENSION] == ["read", "admin"]
    assert paths["/v1/things"]["put"][ROLES_EXTENSION] == ["admin"]
    assert "403" in paths["/v1/things"]["put"]["responses"]
    assert paths["/x/v1/things/{name}"]["delete"][ROLES_EXTENSION] == ["admin"], "routes of included routers too"
    assert paths["/v1/things"]["put"]["description"].startswith("**Needs** a key with role `admin`")


@pytest.mark.parametrize("answer", [
    {"tenant": "acme"},  # an ingest from before roles, during a rolling upgrade
    {"tenant": "acme", "role": "owner"},
    {"role": "admin"},
    {"tenant": "", "role": "admin"},
    ["acme"],
    "not an object",
])
async def test_an_introspection_answer_of_an_unknown_shape_is_a_503_logged_once(
        answer: object, caplog: pytest.LogCaptureFixture) -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content)["api_key"])
        return httpx.Response(200, json=answer)

    keys = KeyIntrospection("http://ingest", internal_token="internal-1", ttl_seconds=30,
                            client=httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    app = service_app("t", "0")

    @app.get("/v1/things")
    async def things(p: Annotated[Principal, Depends(keys.require(READ))]) -> dict[str, str]:
        return {"tenant": p.tenant}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        answers = [await client.get("/v1/things", headers={"Authorization": "Bearer k-read"}) for _ in range(2)]
    assert [r.status_code for r in answers] == [503, 503]
    error = answers[0].json()["error"]
    assert (error["code"], error["message"]) == ("unavailable", "key service answered in an unknown shape")
    assert asked == ["k-read", "k-read"]  # not cached: the next answer, from an upgraded ingest, counts
    assert len([r for r in caplog.records if "unknown shape" in r.getMessage() or "older than" in r.getMessage()]) == 1


async def test_an_answer_without_a_key_id_still_names_the_tenant_and_role() -> None:
    keys = KeyIntrospection("http://ingest", internal_token="i", client=httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json={"tenant": "acme", "role": "read"}))))
    assert await keys.principal("k") == Principal("acme", "read", "")


async def test_a_disabled_tenants_key_is_told_so() -> None:
    app = _app("internal-1", [])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        disabled = await client.get("/v1/things", headers={"Authorization": "Bearer k-disabled"})
        unknown = await client.get("/v1/things", headers={"Authorization": "Bearer nobody"})
    assert disabled.status_code == unknown.status_code == 401
    assert disabled.json()["error"]["message"] == "this API key's tenant is disabled"
    assert unknown.json()["error"]["message"] == "unknown API key"
