"""Tenants and their API keys over HTTP: the operator's `/v1/admin/tenants…` (SCRM_ADMIN_TOKEN) and a tenant
admin's own `/v1/keys…` (a key with role `admin`).

A key is shown once, in the 201 that issues it; lists show its id, prefix, role, label and times, never the
key. Revoking answers 204 once this ingest process refuses the key; every other process (other ingest
replicas, other services) refuses it within `SCRM_KEY_CACHE_SECONDS` (10 s by default, at most 30 s): these
routes read the caller's key from the database on every call (see `ingest.adapters.db`). A disabled tenant's
keys answer 401 everywhere within that same bound, and its webhooks are acknowledged and dropped (counted as
`scrm_ingest_webhook_skipped_total{reason="tenant_disabled"}`).

Routes with a body read it only after the caller is authenticated (`json_body`): no token or a wrong one is a
401 whatever the body, never a 422, and a body is never buffered for an anonymous caller.
"""
# No `from __future__ import annotations`: the dependency aliases below are built inside `build_admin_router`,
# and FastAPI resolves a route's annotations only from the module's globals when they are strings.

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ingest.adapters.auth import TenantKeys, operator
from ingest.adapters.db import KeyRow, TenantDirectory, TenantDisabled, TenantExists, TenantRow, UnknownTenant
from ingest.domain.tenants import KEY_ID_PATTERN, TENANT_ID_PATTERN, TENANT_ID_RULE, tenant_id_problem
from scrm_common.contracts.events import PLAIN
from scrm_common.http import ADMIN, ApiError, Principal, Role, documented_body, error_responses, json_body


def _tenant_id(value: str) -> str:
    if (problem := tenant_id_problem(value)) is not None:
        raise ValueError(problem)
    return value


TenantId = Annotated[str, AfterValidator(_tenant_id), Field(
    json_schema_extra={"pattern": TENANT_ID_PATTERN}, examples=["acme"],
    description=f"The tenant's id: {TENANT_ID_RULE}; it never changes.")]
TenantName = Annotated[str, Field(min_length=1, max_length=200, examples=["ACME GmbH"],
                                  description="A display name (plain text, at most 200 characters)"), PLAIN]
KeyLabel = Annotated[str, Field(min_length=1, max_length=200, examples=["shop backend"],
                                description="What the key is for (plain text, at most 200 characters)"), PLAIN]
ROLE_DESCRIPTION = ("`events`: posts the shop's events and nothing else (what a shop's backend holds); `read`: every "
                    "GET of the tenant's data, nothing else (analysts); `admin`: all of it, and changes the tenant's "
                    "accounts, templates, flows, settings and keys")


class TenantCreate(BaseModel):
    """Body of `POST /v1/admin/tenants`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tenant": "acme",
                                                                               "name": "ACME GmbH"}]})

    tenant: TenantId
    name: TenantName | None = None


class TenantPatch(BaseModel):
    """Body of `PATCH /v1/admin/tenants/{tenant}`: the fields to change (`name: null` clears the name).

    `status: "disabled"` makes the tenant's keys answer 401 everywhere within the key cache's bound and its
    webhooks be acknowledged and dropped; `"active"` undoes it.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "disabled"},
                                                                              {"name": "ACME AG"}]})

    name: TenantName | None = None
    status: Literal["active", "disabled"] | None = None


class TenantRead(BaseModel):
    """A tenant: its id, display name, status, when it was created and (while disabled) since when."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "tenant": "acme", "name": "ACME GmbH", "status": "active", "created_at": "2026-12-01T09:00:00Z",
        "disabled_at": None}]})

    tenant: str
    name: str | None
    status: Literal["active", "disabled"]
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def of(cls, row: TenantRow) -> "TenantRead":
        return cls(tenant=row.tenant, name=row.name, status=row.status, created_at=row.created_at,
                   disabled_at=row.disabled_at)


class TenantList(BaseModel):
    """Every tenant of the installation, by id."""

    tenants: list[TenantRead]


class KeyCreate(BaseModel):
    """Body of `POST /v1/keys` and `POST /v1/admin/tenants/{tenant}/keys`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "events",
                                                                               "label": "shop backend"}]})

    role: Role = Field(description=ROLE_DESCRIPTION)
    label: KeyLabel | None = None


class KeyIssued(BaseModel):
    """A key just issued. `key` is shown this once and never again (it is stored hashed): keep it now."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "key_3fa9c1d2e4b5", "key": "scrm_Xq2…", "prefix": "scrm_Xq2b7Lp", "role": "events",
        "label": "shop backend", "created_at": "2026-12-01T09:00:00Z"}]})

    id: str = Field(pattern=KEY_ID_PATTERN, description="the key's public id (what lists show, what DELETE names)")
    key: str = Field(description="the key: `Authorization: Bearer <key>`; shown only in this answer")
    prefix: str = Field(description="the key's first 12 characters, to recognise it in lists")
    role: Role
    label: str | None
    created_at: datetime


class KeyRead(BaseModel):
    """A key as lists show it: never the key itself.

    `prefix` is `scrm_…` for keys made before prefixes were kept. `last_used_at` moves at most once a minute
    (when ingest reads the key from its database and the last mark is a minute old). `bootstrap`: made from
    `SCRM_BOOTSTRAP_API_KEY` (a start with another value, or with none, revokes it).
    """

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "key_3fa9c1d2e4b5", "prefix": "scrm_Xq2b7Lp", "role": "events", "label": "shop backend",
        "created_at": "2026-12-01T09:00:00Z", "last_used_at": "2026-12-01T09:05:00Z", "revoked_at": None,
        "bootstrap": False}]})

    id: str
    prefix: str
    role: Role
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool

    @classmethod
    def of(cls, row: KeyRow) -> "KeyRead":
        return cls(id=row.id, prefix=row.prefix, role=row.role, label=row.label, created_at=row.created_at,
                   last_used_at=row.last_used_at, revoked_at=row.revoked_at, bootstrap=row.bootstrap)


class KeyList(BaseModel):
    """The tenant's keys, revoked ones included, oldest first."""

    keys: list[KeyRead]


def _no_tenant(tenant: str) -> ApiError:
    return ApiError(404, "not_found", f"no tenant {tenant!r}")


def _no_key(key_id: str) -> ApiError:
    return ApiError(404, "not_found", f"this tenant has no key {key_id!r}")


async def _issue(directory: TenantDirectory, tenant: str, body: KeyCreate) -> KeyIssued:
    try:
        issued = await directory.issue_key(tenant, body.role, label=body.label)
    except UnknownTenant:
        raise _no_tenant(tenant) from None
    except TenantDisabled:
        raise ApiError(409, "tenant_disabled", f"tenant {tenant!r} is disabled: enable it before issuing keys") \
            from None
    row = issued.row
    return KeyIssued(id=row.id, key=issued.key, prefix=row.prefix, role=row.role, label=row.label,
                     created_at=row.created_at)


TENANT_CREATE_BODY = documented_body(TenantCreate, description="The new tenant's id and (optional) display name.")
TENANT_PATCH_BODY = documented_body(TenantPatch, description="The fields to change (`name: null` clears the name).")
KEY_CREATE_BODY = documented_body(KeyCreate, description="The new key's role and (optional) label.")


def build_admin_router(*, admin_token: str, directory: TenantDirectory, keys: TenantKeys) -> APIRouter:
    """The operator's tenant and key routes and the tenant admin's key routes."""
    router = APIRouter()
    operator_only = [Depends(operator(admin_token))]
    AdminKey = Annotated[Principal, Depends(keys.require(ADMIN))]

    @router.post("/v1/admin/tenants", status_code=201, response_model=TenantRead, tags=["tenants"],
                 dependencies=operator_only, responses=error_responses(401, 409, 413, 422),
                 openapi_extra=TENANT_CREATE_BODY)
    async def create_tenant(request: Request) -> TenantRead:
        """Create a tenant (active, without keys: issue its first `admin` key next).

        409 `tenant_exists` when the id is taken; 422 naming the field for a bad id or name."""
        body = await json_body(request, TenantCreate)
        try:
            row = await directory.create_tenant(body.tenant, name=body.name)
        except TenantExists:
            raise ApiError(409, "tenant_exists", f"tenant {body.tenant!r} exists already") from None
        return TenantRead.of(row)

    @router.get("/v1/admin/tenants", response_model=TenantList, tags=["tenants"], dependencies=operator_only,
                responses=error_responses(401))
    async def list_tenants() -> TenantList:
        """Every tenant of the installation, by id."""
        return TenantList(tenants=[TenantRead.of(r) for r in await directory.tenants()])

    @router.get("/v1/admin/tenants/{tenant}", response_model=TenantRead, tags=["tenants"],
                dependencies=operator_only, responses=error_responses(401, 404))
    async def get_tenant(tenant: str) -> TenantRead:
        """One tenant; 404 `not_found` when there is none with this id."""
        row = await directory.tenant(tenant)
        if row is None:
            raise _no_tenant(tenant)
        return TenantRead.of(row)

    @router.patch("/v1/admin/tenants/{tenant}", response_model=TenantRead, tags=["tenants"],
                  dependencies=operator_only, responses=error_responses(401, 404, 413, 422),
                  openapi_extra=TENANT_PATCH_BODY)
    async def patch_tenant(tenant: str, request: Request) -> TenantRead:
        """Rename, disable or enable a tenant.

        Disabled: its keys answer 401 in this ingest process at once, and on every route of every other
        process (other ingest replicas included) within `SCRM_KEY_CACHE_SECONDS` (≤ 30 s); its webhooks are
        acknowledged (200) and dropped, counted as `scrm_ingest_webhook_skipped_total{reason="tenant_disabled"}`.
        Its data and keys stay: enabling it (`"status": "active"`) brings them back."""
        body = await json_body(request, TenantPatch)
        fields = body.model_fields_set
        row = await directory.update_tenant(tenant, name=body.name, set_name="name" in fields,
                                            status=body.status if "status" in fields else None)
        if row is None:
            raise _no_tenant(tenant)
        return TenantRead.of(row)

    @router.post("/v1/admin/tenants/{tenant}/keys", status_code=201, response_model=KeyIssued, tags=["keys"],
                 dependencies=operator_only, responses=error_responses(401, 404, 409, 413, 422),
                 openapi_extra=KEY_CREATE_BODY)
    async def issue_tenant_key(tenant: str, request: Request) -> KeyIssued:
        """Issue a key for a tenant (its first `admin` key, typically); the key is in this answer only.

        404 `not_found` for an unknown tenant, 409 `tenant_disabled` for a disabled one."""
        return await _issue(directory, tenant, await json_body(request, KeyCreate))

    @router.get("/v1/admin/tenants/{tenant}/keys", response_model=KeyList, tags=["keys"],
                dependencies=operator_only, responses=error_responses(401, 404))
    async def list_tenant_keys(tenant: str) -> KeyList:
        """A tenant's keys (prefix, role, label, created, last used, revoked; never the key)."""
        if await directory.tenant(tenant) is None:
            raise _no_tenant(tenant)
        return KeyList(keys=[KeyRead.of(r) for r in await directory.keys(tenant)])

    @router.delete("/v1/admin/tenants/{tenant}/keys/{id}", status_code=204, response_class=Response,
                   tags=["keys"], dependencies=operator_only, responses=error_responses(401, 404))
    async def revoke_tenant_key(tenant: str, id: str) -> Response:
        """Revoke one of a tenant's keys (again: 204, nothing changes); 404 `not_found` when the tenant has
        no key with this id.

        This ingest process refuses the key at once; every route of every other process (other ingest
        replicas included) within `SCRM_KEY_CACHE_SECONDS` (10 s by default, at most 30 s): key management
        and introspection read keys from the database, only `POST /v1/events` and the other services cache."""
        if not await directory.revoke_key(tenant, id):
            raise _no_key(id)
        return Response(status_code=204)

    @router.post("/v1/keys", status_code=201, response_model=KeyIssued, tags=["keys"],
                 responses=error_responses(401, 403, 413, 422), openapi_extra=KEY_CREATE_BODY)
    async def issue_own_key(principal: AdminKey, request: Request) -> KeyIssued:
        """Issue a key for the caller's tenant; the key is in this answer only."""
        return await _issue(directory, principal.tenant, await json_body(request, KeyCreate))

    @router.get("/v1/keys", response_model=KeyList, tags=["keys"], responses=error_responses(401, 403))
    async def list_own_keys(principal: AdminKey) -> KeyList:
        """The caller's tenant's keys (prefix, role, label, created, last used, revoked; never the key)."""
        return KeyList(keys=[KeyRead.of(r) for r in await directory.keys(principal.tenant)])

    @router.delete("/v1/keys/{id}", status_code=204, response_class=Response, tags=["keys"],
                   responses=error_responses(401, 403, 404))
    async def revoke_own_key(principal: AdminKey, id: str) -> Response:
        """Revoke one of the caller's tenant's keys (the caller's own too); 404 `not_found` for an unknown id or
        another tenant's key.

        This ingest process refuses the key at once; every route of every other process (other ingest
        replicas included) within `SCRM_KEY_CACHE_SECONDS` (10 s by default, at most 30 s): key management
        and introspection read keys from the database, only `POST /v1/events` and the other services cache."""
        if not await directory.revoke_key(principal.tenant, id):
            raise _no_key(id)
        return Response(status_code=204)

    return router
