"""Ingest reads a request's body only once the caller is authenticated: an anonymous caller gets 401 whatever
it sends (never a 422 that tells it the route's schema), and no body is buffered beyond its route's bound."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.ingest.conftest import INTERNAL_TOKEN, Ingest
from tests.integration.ingest.test_tenants_api import OPERATOR, bearer, issue, keys_of, make_tenant, tenant_ids

BODY_ROUTES = [
    ("POST", "/v1/admin/tenants"),
    ("PATCH", "/v1/admin/tenants/{tenant}"),
    ("POST", "/v1/admin/tenants/{tenant}/keys"),
    ("POST", "/v1/keys"),
    ("POST", "/internal/v1/keys/introspect"),
]
BAD_BODIES = {"not json": b"{not json", "wrong types": b'{"tenant": 5, "role": "root", "api_key": 7}',
              "a list": b'["x"]', "empty": b"", "60 KiB": b'{"tenant": "' + b"a" * 60_000 + b'"}'}


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
@pytest.mark.parametrize("body", list(BAD_BODIES), ids=list(BAD_BODIES))
@pytest.mark.parametrize("who", ["nobody", "a wrong token"])
async def test_an_unauthenticated_caller_gets_401_whatever_the_body(ingest: Ingest, method: str, path: str,
                                                                   body: str, who: str) -> None:
    tenant = await make_tenant(ingest)
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if who == "a wrong token":
        headers |= {**bearer("scrm_not-a-key"), "X-Scrm-Internal-Token": INTERNAL_TOKEN + "x"}
    before = (await tenant_ids(ingest), await keys_of(ingest, tenant))
    resp = await ingest.client.request(method, path.format(tenant=tenant), content=BAD_BODIES[body], headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "unauthorized"
    assert (await tenant_ids(ingest), await keys_of(ingest, tenant)) == before


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES, ids=[f"{m} {p}" for m, p in BODY_ROUTES])
async def test_an_authenticated_caller_gets_the_422_naming_the_body(ingest: Ingest, method: str, path: str) -> None:
    tenant = await make_tenant(ingest)
    admin = await issue(ingest, tenant, "admin")
    headers = {"Content-Type": "application/json", "X-Scrm-Internal-Token": INTERNAL_TOKEN,
               **(bearer(admin["key"]) if path == "/v1/keys" else OPERATOR)}
    resp = await ingest.client.request(method, path.format(tenant=tenant), content=b"{not json", headers=headers)
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == ["body"]


@pytest.mark.parametrize(("size", "framing"), [(70_000, "content-length"), (70_000, "chunked"),
                                               (5 * 1024 * 1024, "content-length"), (5 * 1024 * 1024, "chunked")])
async def test_an_oversized_body_is_a_413_and_changes_nothing(ingest: Ingest, size: int, framing: str) -> None:
    raw = b'{"tenant": "' + b"a" * size + b'"}'

    async def chunked() -> Any:
        for i in range(0, len(raw), 64 * 1024):
            yield raw[i:i + 64 * 1024]

    before = await tenant_ids(ingest)
    resp = await ingest.client.post("/v1/admin/tenants", content=raw if framing == "content-length" else chunked(),
                                    headers={**OPERATOR, "Content-Type": "application/json"})
    assert resp.status_code == 413, resp.text
    assert resp.json()["error"]["code"] == "body_too_large"
    assert resp.headers["connection"] == "close"
    assert await tenant_ids(ingest) == before
