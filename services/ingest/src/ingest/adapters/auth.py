"""Who may call ingest's routes: tenant keys by role (resolved by ingest itself, not over HTTP) and the
installation operator token (`SCRM_ADMIN_TOKEN`, only on `/v1/admin/…`).

Both dependencies carry `scrm_roles`, which `service_app` writes into each route's OpenAPI (`x-scrm-roles`).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Protocol

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingest.adapters.db import KeyLookup
from scrm_common.http import ApiError, ApiKey, Principal, Role, forbidden, unknown_key

OPERATOR_ROLE = "operator"

# The operator's bearer scheme, apart from the tenants' (`TenantApiKey`) so /docs says which one a route takes.
OPERATOR_BEARER = HTTPBearer(auto_error=False, scheme_name="OperatorToken",
                             description="The installation operator token: `Authorization: Bearer "
                                         "<SCRM_ADMIN_TOKEN>` (only `/v1/admin/…`).")


class KeyResolver(Protocol):
    async def lookup(self, api_key: str, *, cached: bool = False) -> KeyLookup: ...


def tenant_disabled() -> ApiError:
    """The 401 for a key whose tenant the operator disabled."""
    return ApiError(401, "unauthorized", "this API key's tenant is disabled", headers={"WWW-Authenticate": "Bearer"})


class TenantKeys:
    """Resolves the bearer key of a request through ingest's own `TenantDirectory` and checks its role."""

    def __init__(self, directory: KeyResolver, *, on_refused: Callable[[int], None] | None = None) -> None:
        self._directory = directory
        self._on_refused = on_refused or (lambda _status: None)

    def require(self, roles: tuple[Role, ...], *, cached: bool = False) -> Callable[..., Awaitable[Principal]]:
        """FastAPI dependency: the caller's principal if its key's role is one of `roles`.

        The key is read from the database on every call, or with `cached` (the hot path, `POST /v1/events`
        only) from this replica's cache of at most `SCRM_KEY_CACHE_SECONDS`: a key revoked through another
        replica, or whose tenant was disabled there, is refused within that bound.

        401 `unauthorized` for no key, an unknown or revoked one ("unknown API key") or one whose tenant is
        disabled ("this API key's tenant is disabled"); 403 `forbidden` naming the role needed otherwise.
        """

        async def dependency(token: ApiKey) -> Principal:
            found = await (self._directory.lookup(token, cached=True) if cached else self._directory.lookup(token))
            if found.principal is None:
                self._on_refused(401)
                raise tenant_disabled() if found.tenant_disabled else unknown_key()
            if found.principal.role not in roles:
                self._on_refused(403)
                raise forbidden(found.principal.role, roles)
            return found.principal

        dependency.scrm_roles = roles  # type: ignore[attr-defined]  # read by `service_app`'s OpenAPI
        return dependency


def operator(admin_token: str) -> Callable[..., Awaitable[None]]:
    """FastAPI dependency: passes when the bearer token is `admin_token` (compared in constant time), else
    401 `unauthorized`. Declares the `OperatorToken` bearer scheme and the role `operator`."""
    expected = admin_token.strip().encode()

    async def dependency(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(OPERATOR_BEARER)]) -> None:
        presented = (credentials.credentials.strip() if credentials is not None else "").encode()
        if not presented or not hmac.compare_digest(presented, expected):
            raise ApiError(401, "unauthorized", "the operator token (SCRM_ADMIN_TOKEN) is missing or wrong",
                           headers={"WWW-Authenticate": "Bearer"})

    dependency.scrm_roles = (OPERATOR_ROLE,)  # type: ignore[attr-defined]
    return dependency
