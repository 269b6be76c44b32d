"""Trigger-engine HTTP: flow settings (`/v1/flows…`) and tenant settings (`/v1/settings…`), as data.

Reads need a `read` or `admin` key, changes an `admin` key. A change is effective for the next decision of
every replica without a restart (see `trigger_engine.configuration`: a read-through cache with a version check).
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from scrm_common.contracts import wire
from scrm_common.http import (
    ADMIN,
    KEY_ERRORS,
    READ,
    ApiError,
    KeyIntrospection,
    Principal,
    documented_body,
    error_responses,
    field_error,
)
from trigger_engine.adapters.settings_db import Change
from trigger_engine.adapters.template_catalog import SenderUnavailable, TemplateGuard
from trigger_engine.configuration import SettingsRefused, SettingsService, SettingsView, UnknownFlow
from trigger_engine.domain.flows import FLOWS
from trigger_engine.domain.settings import TenantSettings

MAX_BODY_BYTES = 64 * 1024

_EFFECT = ("Effective for the next decision on every replica, without a restart: each batch checks the tenant's "
           "configuration version (one query) and rebuilds what changed.")
_PATCH_RULES = ("The body is a JSON merge patch (RFC 7396) of the current settings: objects such as `templates` "
                "merge per key, `null` resets a setting to its default (or removes a language from `templates`), "
                "lists are replaced whole.")

_VALIDATION = ("An unknown key, a wrong type or a value out of range is a 422 with one error per field "
               "(`body.<name>`, `body.<name>.<key>`), and nothing changes; so is an account the tenant does not own, "
               "and so is a template the sender does not have on the account the flow would send from "
               "(`body.templates.<language>`: \"no template … (de) on account … (its templates in de: …)\"; checked "
               "with the caller's key against the sender's `GET /v1/templates` for what the change newly names, "
               "including a flow turned on or moved to another account) or a default language no flow that is on "
               "has a template in (`body.default_language`). When the sender cannot be asked, such a change is a "
               "503 `sender_unavailable` and nothing changes. Each change gets the next `version` and a history "
               "entry (who: the key's id; when; old → new); a change that changes nothing writes nothing.")
_PUT_DESCRIPTION = f"Replace a flow's settings: absent fields take their defaults.\n\n{_VALIDATION}\n\n{_EFFECT}"
_PATCH_DESCRIPTION = f"Change some of a flow's settings. {_PATCH_RULES}\n\n{_VALIDATION}\n\n{_EFFECT}"
_SETTINGS_DESCRIPTION = (f"Change some of the tenant's settings (time zone, business hours, default language, shop "
                         f"URLs, home region, default account, and `gate`: the send gate's quiet hours (R-S4), "
                         f"frequency cap (R-S5) and fatigue thresholds (R-T4.5, R-T6.3) stamped on every message "
                         f"decided from then on). {_PATCH_RULES}\n\n{_VALIDATION}\n\n{_EFFECT}")


class FlowRead(BaseModel):
    """A flow's settings for the caller's tenant: every field with its value, defaults filled in.

    `version` counts the tenant's changes of this flow (0: never changed, `updated_at`/`updated_by` null).
    """

    flow: str = Field(description="the flow's name: " + ", ".join(FLOWS))
    version: int
    settings: dict[str, Any] = Field(description="the flow's settings model (" + ", ".join(
        kind.__name__ for kind in FLOWS.values()) + "), every field")
    updated_at: datetime | None
    updated_by: str | None = Field(description="the id of the API key that made the last change")


class FlowsRead(BaseModel):
    """GET /v1/flows: every flow's settings."""

    tenant: str
    flows: list[FlowRead]


class ChangeRead(BaseModel):
    """One change: who (API key id), when, and the whole settings before and after."""

    version: int
    changed_at: datetime
    changed_by: str
    old: dict[str, Any]
    new: dict[str, Any]


class FlowHistoryRead(BaseModel):
    """GET /v1/flows/{flow}/history: the flow's changes, newest first."""

    flow: str
    changes: list[ChangeRead]


class SettingsRead(BaseModel):
    """The tenant's settings (`TenantSettings`), every field, at `version` (0: never changed)."""

    tenant: str
    version: int
    settings: dict[str, Any] = Field(description="TenantSettings, every field")
    updated_at: datetime | None
    updated_by: str | None


class SettingsHistoryRead(BaseModel):
    """GET /v1/settings/history: the tenant's settings changes, newest first."""

    tenant: str
    changes: list[ChangeRead]


def _flow_read(flow: str, view: SettingsView) -> FlowRead:
    return FlowRead(flow=flow, version=view.version, settings=view.settings, updated_at=view.updated_at,
                    updated_by=view.updated_by)


def _changes(changes: list[Change]) -> list[ChangeRead]:
    return [ChangeRead(version=c.version, changed_at=c.changed_at, changed_by=c.changed_by, old=c.old, new=c.new)
            for c in changes]


async def _json_body(request: Request) -> Any:
    """The request's JSON body under the wire rules (plain text, unique keys, depth); 413/422 otherwise."""
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large", f"settings over {MAX_BODY_BYTES} bytes")
    try:
        value = wire.loads(raw)
    except wire.JsonRefused as exc:
        raise ApiError(422, "invalid_request", "invalid request", errors=[field_error("body", exc.reason)]) from None
    faults = [field_error(".".join(["body", *path]), reason) for path, reason in wire.problems(value)]
    if faults:
        raise ApiError(422, "invalid_request", "invalid request", errors=faults)
    return value


def _refused(exc: SettingsRefused) -> ApiError:
    return ApiError(422, "invalid_request", "invalid settings; nothing was changed",
                    errors=[field_error(field, reason) for field, reason in exc.faults])


def _not_found(exc: UnknownFlow) -> ApiError:
    return ApiError(404, "not_found", str(exc))


def _sender_unavailable(exc: SenderUnavailable) -> ApiError:
    return ApiError(503, "sender_unavailable", f"{exc}; nothing was changed, try again")


def _authorization(request: Request) -> str:
    """The caller's own `Authorization` header: the template check asks the sender with the caller's key."""
    return request.headers.get("authorization", "")


FlowName = Annotated[str, Path(description="a flow: " + ", ".join(FLOWS), examples=list(FLOWS))]


def _flow_body(description: str) -> dict[str, Any]:
    kinds = tuple(FLOWS.values())
    union: Any = kinds[0]
    for kind in kinds[1:]:
        union = union | kind
    return documented_body(union, description=description, examples={
        "another template": {"templates": {"en_US": "order_confirmed_v2", "de": "order_confirmed_v2"}},
        "welcome off": {"enabled": False}})


def build_settings_router(*, service: SettingsService, keys: KeyIntrospection,
                          templates: TemplateGuard | None = None) -> APIRouter:
    """`/v1/flows…` and `/v1/settings…` for the caller's tenant. `templates` checks that a change names only
    templates the sender has (None: not checked)."""
    router = APIRouter(tags=["settings"], responses=KEY_ERRORS)
    Reader = Annotated[Principal, Depends(keys.require(READ))]
    Admin = Annotated[Principal, Depends(keys.require(ADMIN))]

    @router.get("/v1/flows", response_model=FlowsRead)
    async def list_flows(principal: Reader) -> FlowsRead:
        """Every flow's settings: whether it runs, its account and templates, and its SPEC numbers."""
        views = await service.flows(principal.tenant)
        return FlowsRead(tenant=principal.tenant, flows=[_flow_read(name, view) for name, view in views.items()])

    @router.get("/v1/flows/{flow}", response_model=FlowRead, responses=error_responses(404))
    async def get_flow(flow: FlowName, principal: Reader) -> FlowRead:
        """One flow's settings, every field with its value (defaults filled in). 404 for an unknown flow."""
        try:
            return _flow_read(flow, await service.flow(principal.tenant, flow))
        except UnknownFlow as exc:
            raise _not_found(exc) from None

    @router.put("/v1/flows/{flow}", response_model=FlowRead, responses=error_responses(404, 413, 422, 503),
                openapi_extra=_flow_body("The flow's whole settings; an absent field is its default."),
                description=_PUT_DESCRIPTION)
    async def put_flow(flow: FlowName, request: Request, principal: Admin) -> FlowRead:
        """Replace a flow's settings: absent fields take their defaults."""
        return await _change(flow, request, principal, replace=True)

    @router.patch("/v1/flows/{flow}", response_model=FlowRead, responses=error_responses(404, 413, 422, 503),
                  openapi_extra=_flow_body("Some of the flow's settings. " + _PATCH_RULES),
                  description=_PATCH_DESCRIPTION)
    async def patch_flow(flow: FlowName, request: Request, principal: Admin) -> FlowRead:
        """Change some of a flow's settings (a JSON merge patch), validated like PUT."""
        return await _change(flow, request, principal, replace=False)

    async def _change(flow: str, request: Request, principal: Principal, *, replace: bool) -> FlowRead:
        try:
            service.kind(flow)
            body = await _json_body(request)
            if templates is not None:
                await templates.check_flow(principal.tenant, flow, body, replace=replace,
                                           authorization=_authorization(request))
            view = await service.change_flow(principal.tenant, flow, body, by=principal.key_id, replace=replace)
        except UnknownFlow as exc:
            raise _not_found(exc) from None
        except SettingsRefused as exc:
            raise _refused(exc) from None
        except SenderUnavailable as exc:
            raise _sender_unavailable(exc) from None
        return _flow_read(flow, view)

    @router.get("/v1/flows/{flow}/history", response_model=FlowHistoryRead, responses=error_responses(404))
    async def flow_history(flow: FlowName, principal: Reader,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> FlowHistoryRead:
        """A flow's changes, newest first: version, when, which key, the whole settings before and after."""
        try:
            changes = await service.flow_history(principal.tenant, flow, limit)
        except UnknownFlow as exc:
            raise _not_found(exc) from None
        return FlowHistoryRead(flow=flow, changes=_changes(changes))

    @router.get("/v1/settings", response_model=SettingsRead)
    async def get_settings(principal: Reader) -> SettingsRead:
        """The tenant's settings: time zone, business hours, default language, shop URLs, home region, default
        account. Defaults are the installation's (`SCRM_SHOP_*`, `SCRM_DEFAULT_LANGUAGE`)."""
        return _settings_read(principal.tenant, await service.tenant_settings(principal.tenant))

    @router.patch("/v1/settings", response_model=SettingsRead, responses=error_responses(413, 422, 503),
                  openapi_extra=documented_body(TenantSettings, description="Some of the tenant's settings. "
                                                + _PATCH_RULES, examples={"business hours": {
                                                    "business_hours": {"start": "09:00", "end": "18:00",
                                                                       "days": [1, 2, 3, 4, 5]}}}),
                  description=_SETTINGS_DESCRIPTION)
    async def patch_settings(request: Request, principal: Admin) -> SettingsRead:
        """Change some of the tenant's settings (a JSON merge patch)."""
        try:
            body = await _json_body(request)
            if templates is not None:
                await templates.check_settings(principal.tenant, body, authorization=_authorization(request))
            view = await service.change_tenant_settings(principal.tenant, body, by=principal.key_id)
        except SettingsRefused as exc:
            raise _refused(exc) from None
        except SenderUnavailable as exc:
            raise _sender_unavailable(exc) from None
        return _settings_read(principal.tenant, view)

    @router.get("/v1/settings/history", response_model=SettingsHistoryRead)
    async def settings_history(principal: Reader,
                               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> SettingsHistoryRead:
        """The tenant's settings changes, newest first."""
        return SettingsHistoryRead(tenant=principal.tenant,
                                   changes=_changes(await service.tenant_history(principal.tenant, limit)))

    return router


def _settings_read(tenant: str, view: SettingsView) -> SettingsRead:
    return SettingsRead(tenant=tenant, version=view.version, settings=view.settings, updated_at=view.updated_at,
                        updated_by=view.updated_by)
