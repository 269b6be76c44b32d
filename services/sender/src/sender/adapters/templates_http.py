"""Sender HTTP: the templates of the caller's tenant (those of its accounts' WABAs) and syncing them from the
Cloud API (R-S2; CLOUD-API.md §2.4, §6.5)."""

# No `from __future__ import annotations`: FastAPI must resolve the `Annotated[Principal, Depends(...)]` aliases
# built inside `build_templates_router`.

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.http import ADMIN, READ, ApiError, KeyIntrospection, Principal, error_responses, has_control_character
from sender.adapters.templates import SyncFailed, TemplateStore, TemplateSync, UnknownAccount

_Text = Annotated[str, Field(min_length=1, max_length=128)]


class TemplateRead(BaseModel):
    """A template of one of the tenant's WABAs as the sender has it (synced, seeded, or changed by a webhook)."""

    template_id: str | None = Field(description="Meta's id of the template; null until its first sync")
    waba_id: str
    account_ids: list[str] = Field(description="the tenant's accounts (phone number ids) on that WABA")
    name: str
    language: str
    category: str = Field(description="utility, marketing or authentication")
    status: str = Field(description="APPROVED and FLAGGED are sent; PAUSED, DISABLED, REJECTED, PENDING, DELETED … "
                                    "never are (the send fails with that reason)")
    quality: str | None = Field(description="GREEN, YELLOW, RED or UNKNOWN")
    components: list[dict[str, Any]] = Field(description="Meta's components: HEADER (TEXT/IMAGE/VIDEO/DOCUMENT), "
                                                         "BODY, FOOTER, BUTTONS (a URL button may take a variable)")
    parameter_format: str
    rejected_reason: str | None
    synced_at: datetime | None = Field(description="when a sync last saw it listed; null: seeded, never synced")
    updated_at: datetime


class TemplatesRead(BaseModel):
    """GET /v1/templates."""

    tenant: str
    templates: list[TemplateRead]


class SyncRequest(BaseModel):
    """POST /v1/templates/sync: one account's WABA, or (no `account_id`) every account's."""

    model_config = ConfigDict(extra="forbid")

    account_id: _Text | None = None


class AccountSyncRead(BaseModel):
    account_id: str
    waba_id: str
    templates: int = Field(description="templates the Cloud API listed for the account's WABA")


class SyncRead(BaseModel):
    """What a sync stored: the templates listed in all (each WABA counted once) and per account."""

    synced: int
    accounts: list[AccountSyncRead]


def _filter(name: str, value: str | None) -> str | None:
    if value is not None and has_control_character(value):
        raise ApiError(422, "invalid_request", "invalid request", errors=[
            {"index": None, "field": f"query.{name}", "reason": "contains a control character"}])
    return value


def build_templates_router(*, engine: AsyncEngine, keys: KeyIntrospection, sync: TemplateSync,
                           store: TemplateStore | None = None) -> APIRouter:
    """`GET /v1/templates` (role read or admin) and `POST /v1/templates/sync` (admin) for the caller's tenant."""
    router = APIRouter(responses=error_responses(401, 503), tags=["templates"])
    store = store or TemplateStore()
    Reader = Annotated[Principal, Depends(keys.require(READ))]
    Admin = Annotated[Principal, Depends(keys.require(ADMIN))]

    @router.get("/v1/templates", response_model=TemplatesRead, responses=error_responses(403, 422))
    async def templates(principal: Reader,
                        account_id: Annotated[str | None, Query(max_length=128, description="an account")] = None,
                        name: Annotated[str | None, Query(max_length=512)] = None,
                        language: Annotated[str | None, Query(max_length=16, examples=["en_US"])] = None,
                        status: Annotated[str | None, Query(max_length=32, examples=["PAUSED"])] = None,
                        category: Annotated[str | None, Query(max_length=32, examples=["utility"])] = None,
                        ) -> TemplatesRead:
        """The templates of the WABAs of the tenant's accounts, by name and language, filtered by account,
        name, language, status (case-insensitive) and category (case-insensitive). An account the tenant does
        not have gives an empty list."""
        for field, value in (("account_id", account_id), ("name", name), ("language", language), ("status", status),
                             ("category", category)):
            _filter(field, value)
        async with engine.connect() as conn:
            rows = await store.list(conn, principal.tenant, account_id=account_id, name=name, language=language,
                                    status=status, category=category)
        return TemplatesRead(tenant=principal.tenant, templates=[TemplateRead.model_validate(r) for r in rows])

    @router.post("/v1/templates/sync", response_model=SyncRead, responses=error_responses(403, 404, 422))
    async def sync_templates(principal: Admin, body: Annotated[SyncRequest | None, Body()] = None) -> SyncRead:
        """Pull the templates of the account's WABA (every account's when `account_id` is absent) from the
        Cloud API's `GET /{waba_id}/message_templates`, every page; store each with its components, status and
        quality, and mark those no longer listed `DELETED`. Rate limits (80007, 4) are waited out a few times;
        past that 503 `provider_unavailable` with the provider's reason. 422 `provider_refused` with the
        provider's reason when it refuses (a revoked token: 190); 422 `no_waba` for an account without a WABA
        id; 404 for an account the tenant does not have."""
        account_id = body.account_id if body is not None else None
        try:
            synced = await sync.sync(principal.tenant, account_id)
        except UnknownAccount:
            raise ApiError(404, "not_found", f"no account {account_id}") from None
        except SyncFailed as exc:
            raise ApiError(exc.status, exc.code, str(exc)) from None
        per_waba = {s.waba_id: s.templates for s in synced}
        return SyncRead(synced=sum(per_waba.values()),
                        accounts=[AccountSyncRead(account_id=s.account_id, waba_id=s.waba_id, templates=s.templates)
                                  for s in synced])

    return router
