"""Tenants and keys through ingest's HTTP API against the real PostgreSQL: the operator's routes, a tenant admin's
own keys, roles, isolation between tenants, disabled tenants, introspection, and precise 422s that change nothing."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from ingest.adapters.db import TenantDirectory
from ingest.main import MIGRATIONS, SCHEMA
from scrm_common.db import make_engine, migrate
from scrm_common.http import hash_api_key
from tests.integration.ingest.conftest import INTERNAL_TOKEN, OPERATOR_TOKEN, Ingest

OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def event(event_id: str = "c-1") -> dict[str, Any]:
    return {"event_id": event_id, "type": "contact.created", "occurred_at": datetime.now(UTC).isoformat(),
            "contact": {"external_id": "cust-1"}, "data": {"opted_in": True}}


async def make_tenant(ingest: Ingest, name: str | None = None) -> str:
    tenant = new_id()
    resp = await ingest.client.post("/v1/admin/tenants", json={"tenant": tenant, "name": name}, headers=OPERATOR)
    assert resp.status_code == 201, resp.text
    return tenant


async def issue(ingest: Ingest, tenant: str, role: str, label: str | None = None) -> dict[str, Any]:
    resp = await ingest.client.post(f"/v1/admin/tenants/{tenant}/keys", json={"role": role, "label": label},
                                    headers=OPERATOR)
    assert resp.status_code == 201, resp.text
    return resp.json()


async def keys_of(ingest: Ingest, tenant: str) -> list[dict[str, Any]]:
    resp = await ingest.client.get(f"/v1/admin/tenants/{tenant}/keys", headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    return resp.json()["keys"]


async def tenant_ids(ingest: Ingest) -> list[str]:
    resp = await ingest.client.get("/v1/admin/tenants", headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    return [t["tenant"] for t in resp.json()["tenants"]]


# ---------------------------------------------------------------------------------------------------------
# The operator


async def test_the_operator_creates_lists_reads_renames_disables_and_enables_tenants(ingest: Ingest) -> None:
    tenant = new_id()
    created = await ingest.client.post("/v1/admin/tenants", json={"tenant": tenant, "name": "ACME GmbH"},
                                       headers=OPERATOR)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["tenant"], body["name"], body["status"], body["disabled_at"]) == (tenant, "ACME GmbH", "active",
                                                                                   None)
    assert datetime.fromisoformat(body["created_at"]) <= datetime.now(UTC)
    assert tenant in await tenant_ids(ingest)
    assert (await ingest.client.get(f"/v1/admin/tenants/{tenant}", headers=OPERATOR)).json() == body

    renamed = await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"name": "ACME AG"}, headers=OPERATOR)
    assert renamed.status_code == 200 and renamed.json() == {**body, "name": "ACME AG"}

    disabled = (await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"status": "disabled"},
                                          headers=OPERATOR)).json()
    assert disabled["status"] == "disabled" and disabled["disabled_at"] is not None and disabled["name"] == "ACME AG"
    again = (await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"status": "disabled"},
                                       headers=OPERATOR)).json()
    assert again["disabled_at"] == disabled["disabled_at"]  # disabling again keeps when it was disabled

    enabled = (await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"status": "active", "name": None},
                                         headers=OPERATOR)).json()
    assert (enabled["status"], enabled["disabled_at"], enabled["name"]) == ("active", None, None)


async def test_a_tenant_id_is_taken_once(ingest: Ingest) -> None:
    tenant = await make_tenant(ingest, "first")
    resp = await ingest.client.post("/v1/admin/tenants", json={"tenant": tenant, "name": "second"}, headers=OPERATOR)
    assert resp.status_code == 409
    assert resp.json()["error"]["code"] == "tenant_exists"
    assert (await ingest.client.get(f"/v1/admin/tenants/{tenant}", headers=OPERATOR)).json()["name"] == "first"


@pytest.mark.parametrize(("body", "field"), [
    ({"tenant": "Upper"}, "body.tenant"),
    ({"tenant": "-dash"}, "body.tenant"),
    ({"tenant": "a"}, "body.tenant"),
    ({"tenant": "a" * 64}, "body.tenant"),
    ({"tenant": "under_score"}, "body.tenant"),
    ({"tenant": 42}, "body.tenant"),
    ({}, "body.tenant"),
    ({"tenant": "fine-id", "name": "bad\x1bname"}, "body.name"),
    ({"tenant": "fine-id", "name": ""}, "body.name"),
    ({"tenant": "fine-id", "name": "n" * 201}, "body.name"),
    ({"tenant": "fine-id", "plan": "gold"}, "body.plan"),
])
async def test_bad_tenant_bodies_get_a_422_naming_the_field_and_create_nothing(ingest: Ingest, body: dict[str, Any],
                                                                               field: str) -> None:
    before = await tenant_ids(ingest)
    resp = await ingest.client.post("/v1/admin/tenants", json=body, headers=OPERATOR)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["code"] == "invalid_request"
    assert [e["field"] for e in resp.json()["errors"]] == [field]
    assert await tenant_ids(ingest) == before


@pytest.mark.parametrize(("body", "field"), [
    ({"status": "paused"}, "body.status"),
    ({"name": "x" * 201}, "body.name"),
    ({"name": "ok", "plan": "gold"}, "body.plan"),
    ({"tenant": "renamed"}, "body.tenant"),  # the id never changes
])
async def test_bad_patches_get_a_422_naming_the_field_and_change_nothing(ingest: Ingest, body: dict[str, Any],
                                                                         field: str) -> None:
    tenant = await make_tenant(ingest, "kept")
    before = (await ingest.client.get(f"/v1/admin/tenants/{tenant}", headers=OPERATOR)).json()
    resp = await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json=body, headers=OPERATOR)
    assert resp.status_code == 422, resp.text
    assert [e["field"] for e in resp.json()["errors"]] == [field]
    assert (await ingest.client.get(f"/v1/admin/tenants/{tenant}", headers=OPERATOR)).json() == before


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/admin/tenants/nobody-here", None),
    ("PATCH", "/v1/admin/tenants/nobody-here", {"name": "x"}),
    ("GET", "/v1/admin/tenants/nobody-here/keys", None),
    ("POST", "/v1/admin/tenants/nobody-here/keys", {"role": "admin"}),
    ("DELETE", "/v1/admin/tenants/nobody-here/keys/key_000000000000", None),
])
async def test_an_unknown_tenant_is_a_404(ingest: Ingest, method: str, path: str, body: Any) -> None:
    resp = await ingest.client.request(method, path, json=body, headers=OPERATOR)
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "not_found"
    assert "nobody-here" not in await tenant_ids(ingest)


OPERATOR_ROUTES = [
    ("POST", "/v1/admin/tenants", {"tenant": "never-made"}),
    ("GET", "/v1/admin/tenants", None),
    ("GET", "/v1/admin/tenants/{tenant}", None),
    ("PATCH", "/v1/admin/tenants/{tenant}", {"status": "disabled"}),
    ("POST", "/v1/admin/tenants/{tenant}/keys", {"role": "admin"}),
    ("GET", "/v1/admin/tenants/{tenant}/keys", None),
    ("DELETE", "/v1/admin/tenants/{tenant}/keys/{key_id}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_ROUTES, ids=[f"{m} {p}" for m, p, _ in OPERATOR_ROUTES])
@pytest.mark.parametrize("who", ["no token", "wrong token", "a tenant admin key", "the internal token"])
async def test_operator_routes_need_the_operator_token_and_change_nothing_without_it(
        ingest: Ingest, method: str, path: str, body: Any, who: str) -> None:
    tenant = await make_tenant(ingest)
    admin = await issue(ingest, tenant, "admin")
    headers = {"no token": {}, "wrong token": bearer(OPERATOR_TOKEN + "x"), "a tenant admin key": bearer(admin["key"]),
               "the internal token": bearer(INTERNAL_TOKEN)}[who]
    before = (await tenant_ids(ingest), await keys_of(ingest, tenant))
    resp = await ingest.client.request(method, path.format(tenant=tenant, key_id=admin["id"]), json=body,
                                       headers=headers)
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"]["code"] == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"
    assert (await tenant_ids(ingest), await keys_of(ingest, tenant)) == before


# ---------------------------------------------------------------------------------------------------------
# Keys


async def test_a_key_is_shown_once_stored_hashed_and_listed_without_it(ingest: Ingest, engine: Any) -> None:
    tenant = await make_tenant(ingest)
    issued = await issue(ingest, tenant, "events", "shop backend")
    assert set(issued) == {"id", "key", "prefix", "role", "label", "created_at"}
    assert re.fullmatch(r"key_[0-9a-f]{12}", issued["id"])
    assert issued["key"].startswith("scrm_") and len(issued["key"]) >= 40
    assert issued["prefix"] == issued["key"][:12]
    assert (issued["role"], issued["label"]) == ("events", "shop backend")

    listed = await keys_of(ingest, tenant)
    assert listed == [{"id": issued["id"], "prefix": issued["prefix"], "role": "events", "label": "shop backend",
                       "created_at": issued["created_at"], "last_used_at": None, "revoked_at": None,
                       "bootstrap": False}]
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": issued["id"]})).one()
    assert stored.key_hash == hash_api_key(issued["key"])
    assert issued["key"] not in [str(v) for v in stored]  # only its hash and prefix are kept


async def test_a_tenant_admin_issues_lists_and_revokes_its_own_keys(ingest: Ingest) -> None:
    tenant = await make_tenant(ingest)
    admin = await issue(ingest, tenant, "admin", "owner")
    reader = await ingest.client.post("/v1/keys", json={"role": "read", "label": "analyst"},
                                      headers=bearer(admin["key"]))
    assert reader.status_code == 201, reader.text
    reader_key = reader.json()
    events = (await ingest.client.post("/v1/keys", json={"role": "events"}, headers=bearer(admin["key"]))).json()

    listed = await ingest.client.get("/v1/keys", headers=bearer(admin["key"]))
    assert listed.status_code == 200
    keys = listed.json()["keys"]
    assert [(k["id"], k["role"], k["label"]) for k in keys] == [
        (admin["id"], "admin", "owner"), (reader_key["id"], "read", "analyst"), (events["id"], "events", None)]
    assert all("key" not in k for k in keys)
    used = {k["id"]: k["last_used_at"] for k in keys}
    assert used[admin["id"]] is not None and used[events["id"]] is None  # the admin key was used, not the others

    assert (await ingest.client.post("/v1/events", json=event(), headers=bearer(reader_key["key"]))).status_code == 403
    revoked = await ingest.client.delete(f"/v1/keys/{events['id']}", headers=bearer(admin["key"]))
    assert revoked.status_code == 204 and revoked.content == b""
    # Ingest refuses it at once (its own cache entry is dropped; this directory caches for 30 s).
    resp = await ingest.client.post("/v1/events", json=event(), headers=bearer(events["key"]))
    assert resp.status_code == 401 and resp.json()["error"]["message"] == "unknown API key"
    listed_after = {k["id"]: k for k in await keys_of(ingest, tenant)}
    assert listed_after[events["id"]]["revoked_at"] is not None
    assert listed_after[reader_key["id"]]["revoked_at"] is None
    # Revoking again changes nothing.
    assert (await ingest.client.delete(f"/v1/keys/{events['id']}", headers=bearer(admin["key"]))).status_code == 204
    assert {k["id"]: k for k in await keys_of(ingest, tenant)} == listed_after


async def test_a_revoked_key_is_refused_at_once_even_after_it_was_cached(ingest: Ingest) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "events")
    assert (await ingest.client.post("/v1/events", json=event(), headers=bearer(key["key"]))).status_code == 202
    resp = await ingest.client.delete(f"/v1/admin/tenants/{tenant}/keys/{key['id']}", headers=OPERATOR)
    assert resp.status_code == 204
    assert (await ingest.client.post("/v1/events", json=event("c-2"), headers=bearer(key["key"]))).status_code == 401
    introspected = await ingest.client.post("/internal/v1/keys/introspect", json={"api_key": key["key"]},
                                            headers={"X-Scrm-Internal-Token": INTERNAL_TOKEN})
    assert introspected.status_code == 404
    assert len(ingest.recorder.sent) == 1


async def test_one_tenants_admin_cannot_see_or_revoke_anothers_keys(ingest: Ingest) -> None:
    a, b = await make_tenant(ingest), await make_tenant(ingest)
    a_admin, b_admin = await issue(ingest, a, "admin"), await issue(ingest, b, "admin")
    a_events = await issue(ingest, a, "events")

    b_list = (await ingest.client.get("/v1/keys", headers=bearer(b_admin["key"]))).json()["keys"]
    assert [k["id"] for k in b_list] == [b_admin["id"]]
    for victim in (a_events["id"], a_admin["id"]):
        resp = await ingest.client.delete(f"/v1/keys/{victim}", headers=bearer(b_admin["key"]))
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
        # nor through the operator's route under the wrong tenant
        resp = await ingest.client.delete(f"/v1/admin/tenants/{b}/keys/{victim}", headers=OPERATOR)
        assert resp.status_code == 404
    assert all(k["revoked_at"] is None for k in await keys_of(ingest, a))
    assert (await ingest.client.post("/v1/events", json=event(), headers=bearer(a_events["key"]))).status_code == 202
    assert ingest.recorder.tenants() == [a]


@pytest.mark.parametrize(("path_id", "status"), [("key_ffffffffffff", 404), ("not-a-key-id", 404), ("key_", 404)])
async def test_revoking_an_unknown_key_is_a_404(ingest: Ingest, path_id: str, status: int) -> None:
    tenant = await make_tenant(ingest)
    admin = await issue(ingest, tenant, "admin")
    resp = await ingest.client.delete(f"/v1/keys/{path_id}", headers=bearer(admin["key"]))
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("body", "field"), [
    ({"role": "owner"}, "body.role"),
    ({"role": "admin", "label": "l" * 201}, "body.label"),
    ({"role": "admin", "label": "tab\tis fine but NUL\x00 is not"}, "body.label"),
    ({}, "body.role"),
    ({"role": "read", "expires": "never"}, "body.expires"),
])
async def test_bad_key_bodies_get_a_422_naming_the_field_and_issue_nothing(ingest: Ingest, body: dict[str, Any],
                                                                           field: str) -> None:
    tenant = await make_tenant(ingest)
    admin = await issue(ingest, tenant, "admin")
    for path, headers in (("/v1/keys", bearer(admin["key"])), (f"/v1/admin/tenants/{tenant}/keys", OPERATOR)):
        resp = await ingest.client.post(path, json=body, headers=headers)
        assert resp.status_code == 422, resp.text
        assert [e["field"] for e in resp.json()["errors"]] == [field]
    assert [k["id"] for k in await keys_of(ingest, tenant)] == [admin["id"]]


# ---------------------------------------------------------------------------------------------------------
# Roles


@pytest.mark.parametrize(("role", "method", "path", "body", "status"), [
    ("events", "GET", "/v1/keys", None, 403),
    ("events", "POST", "/v1/keys", {"role": "admin"}, 403),
    ("read", "GET", "/v1/keys", None, 403),
    ("read", "POST", "/v1/keys", {"role": "admin"}, 403),
    ("read", "POST", "/v1/events", "event", 403),
    ("events", "POST", "/v1/events", "event", 202),
    ("admin", "POST", "/v1/events", "event", 202),
    ("admin", "GET", "/v1/keys", None, 200),
])
async def test_each_role_may_do_what_it_may_and_nothing_else(ingest: Ingest, role: str, method: str, path: str,
                                                             body: Any, status: int) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, role)
    before = await keys_of(ingest, tenant)
    resp = await ingest.client.request(method, path, json=event() if body == "event" else body,
                                       headers=bearer(key["key"]))
    assert resp.status_code == status, resp.text
    if status == 403:
        error = resp.json()["error"]
        assert error["code"] == "forbidden"
        assert f"role {role!r}" in error["message"] and "needs role" in error["message"]
        assert ingest.recorder.sent == []
        assert [k["id"] for k in await keys_of(ingest, tenant)] == [k["id"] for k in before]
    if status == 202:
        assert ingest.recorder.tenants() == [tenant]


@pytest.mark.parametrize("kind", ["link.clicked", "message.status", "account.registered"])
async def test_an_events_key_cannot_post_what_the_platform_produces(ingest: Ingest, kind: str) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "events")
    data = {"link.clicked": {"link_id": "l-1", "url": "https://shop.example/a"},
            "message.status": {"message_id": "wamid.1", "status": "read"},
            "account.registered": {"account_id": "100000000000077", "waba_id": "200000000000077"}}[kind]
    body: dict[str, Any] = {"event_id": "p-1", "type": kind, "occurred_at": datetime.now(UTC).isoformat(), "data": data}
    if kind != "account.registered":
        body["contact"] = {"external_id": "cust-1"}
    resp = await ingest.client.post("/v1/events", json=body, headers=bearer(key["key"]))
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "type"
    assert ingest.recorder.sent == []


# ---------------------------------------------------------------------------------------------------------
# Disabled tenants and introspection


async def test_a_disabled_tenants_keys_answer_401_and_it_gets_no_new_ones_until_enabled(ingest: Ingest) -> None:
    tenant = await make_tenant(ingest)
    admin = await issue(ingest, tenant, "admin")
    assert (await ingest.client.get("/v1/keys", headers=bearer(admin["key"]))).status_code == 200  # now cached

    await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"status": "disabled"}, headers=OPERATOR)
    resp = await ingest.client.get("/v1/keys", headers=bearer(admin["key"]))
    assert resp.status_code == 401
    assert resp.json()["error"] == {"code": "unauthorized", "message": "this API key's tenant is disabled"}
    assert (await ingest.client.post("/v1/events", json=event(), headers=bearer(admin["key"]))).status_code == 401
    introspected = await ingest.client.post("/internal/v1/keys/introspect", json={"api_key": admin["key"]},
                                            headers={"X-Scrm-Internal-Token": INTERNAL_TOKEN})
    assert introspected.status_code == 404 and introspected.json()["error"]["code"] == "tenant_disabled"
    refused = await ingest.client.post(f"/v1/admin/tenants/{tenant}/keys", json={"role": "admin"}, headers=OPERATOR)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "tenant_disabled"
    assert [k["id"] for k in await keys_of(ingest, tenant)] == [admin["id"]]
    assert ingest.recorder.sent == []

    await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"status": "active"}, headers=OPERATOR)
    assert (await ingest.client.get("/v1/keys", headers=bearer(admin["key"]))).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-Scrm-Internal-Token": "guess"}, {"X-Scrm-Internal-Token": ""},
                                     OPERATOR])
async def test_introspection_needs_the_internal_token(ingest: Ingest, headers: dict[str, str]) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, "read")
    resp = await ingest.client.post("/internal/v1/keys/introspect", json={"api_key": key["key"]}, headers=headers)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert tenant not in resp.text


@pytest.mark.parametrize("role", ["events", "read", "admin"])
async def test_introspection_tells_the_tenant_role_and_key_id(ingest: Ingest, role: str) -> None:
    tenant = await make_tenant(ingest)
    key = await issue(ingest, tenant, role)
    resp = await ingest.client.post("/internal/v1/keys/introspect", json={"api_key": key["key"]},
                                    headers={"X-Scrm-Internal-Token": INTERNAL_TOKEN})
    assert resp.status_code == 200
    assert resp.json() == {"tenant": tenant, "role": role, "key_id": key["id"]}
    unknown = await ingest.client.post("/internal/v1/keys/introspect", json={"api_key": key["key"] + "x"},
                                       headers={"X-Scrm-Internal-Token": INTERNAL_TOKEN})
    assert unknown.status_code == 404


# ---------------------------------------------------------------------------------------------------------
# The bootstrap and the migration of existing keys


async def test_the_bootstrap_key_is_an_admin_key_listed_as_the_bootstrap(ingest: Ingest) -> None:
    tenant = new_id()
    key = f"scrm_boot_{uuid.uuid4().hex}"
    await ingest.directory.bootstrap(tenant=tenant, api_key=key, phone_number_id=None)
    listed = await keys_of(ingest, tenant)
    assert [(k["role"], k["bootstrap"], k["prefix"]) for k in listed] == [("admin", True, key[:12])]
    assert (await ingest.client.get("/v1/keys", headers=bearer(key))).status_code == 200
    # What the bootstrap made is changeable through the API: the operator renames the tenant.
    resp = await ingest.client.patch(f"/v1/admin/tenants/{tenant}", json={"name": "Demo shop"}, headers=OPERATOR)
    assert resp.json()["name"] == "Demo shop"


@pytest.fixture
def fresh_database_url(postgres: Any) -> str:
    return postgres.new_database()  # (sync: it runs its own event loop)


async def test_existing_keys_get_an_id_and_a_role_from_read_only(fresh_database_url: str, tmp_path: Path) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name < "004":
            (before / path.name).write_text(path.read_text())
    engine = make_engine(fresh_database_url, schema=SCHEMA, pool_size=2)
    try:
        await migrate(engine, schema=SCHEMA, directory=before)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO tenants(tenant) VALUES ('old-shop')"))
            await conn.execute(text(
                "INSERT INTO api_keys(key_hash, tenant, read_only) VALUES (:w, 'old-shop', false), "
                "(:r, 'old-shop', true)"), {"w": hash_api_key("scrm_old_writer"), "r": hash_api_key("scrm_old_reader")})
        assert await migrate(engine, schema=SCHEMA, directory=MIGRATIONS) == [
            p.name for p in sorted(MIGRATIONS.glob("*.sql")) if p.name >= "004"]
        directory = TenantDirectory(engine, cache_seconds=0)
        writer = await directory.principal_for("scrm_old_writer")
        reader = await directory.principal_for("scrm_old_reader")
        assert writer is not None and reader is not None
        assert (writer.tenant, writer.role, reader.role) == ("old-shop", "admin", "read")
        listed = await directory.keys("old-shop")
        assert {k.id for k in listed} == {writer.key_id, reader.key_id}
        assert all(re.fullmatch(r"key_[0-9a-f]{12}", k.id) and k.prefix == "scrm_…" for k in listed)
    finally:
        await engine.dispose()
