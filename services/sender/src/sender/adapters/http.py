"""Sender HTTP: accounts, the send log and the invalid-number marks of the caller's tenant."""


from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from scrm_common.clock import Clock
from scrm_common.http import KeyIntrospection, Principal
from scrm_common.phones import InvalidPhoneNumber, to_e164
from sender.adapters.db import SendLog
from sender.domain.lookup import phone_forms


class ApiError(Exception):
    """An HTTP error answered as `{"error": {"code", "message"}}`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None,
           errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every 4xx/5xx in the documented shape `{"error": {"code", "message"}}` (CONTRACT §2)."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
                503: "unavailable"}.get(exc.status_code, "error")
        return _error(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"index": None, "field": ".".join(str(p) for p in e["loc"]), "reason": e["msg"]}
                  for e in exc.errors()]
        return _error(422, "invalid_request", "invalid request", errors=errors)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, __: Exception) -> JSONResponse:
        # Starlette re-raises the exception after this answer, so the server still logs its traceback.
        return _error(500, "internal_error", "internal error; retry later")


def _storable(value: str) -> bool:
    """False for text PostgreSQL cannot compare (a NUL): no row can hold it, and the query would fail."""
    return "\x00" not in value


def _phone(raw: str) -> str:
    """The E.164 form of a path's phone (`+4915…`, `4915…`, `%2B4915…`), or 422."""
    if not _storable(raw):
        raise ApiError(422, "invalid_phone", "not a phone number: it contains a NUL character")
    try:
        return to_e164(raw if raw.startswith("+") else "+" + raw)
    except InvalidPhoneNumber as exc:
        raise ApiError(422, "invalid_phone", f"not a phone number: {exc}") from None


def build_router(*, engine: AsyncEngine, send_log: SendLog, keys: KeyIntrospection, clock: Clock) -> APIRouter:
    router = APIRouter()
    PrincipalDep = Annotated[Principal, Depends(keys.principal)]

    @router.get("/v1/accounts")
    async def accounts(principal: PrincipalDep) -> dict[str, object]:
        """The tenant's WhatsApp accounts, their pacing policies and restrictions in force (tokens never)."""
        async with engine.connect() as conn:
            return {"tenant": principal.tenant,
                    "accounts": await send_log.accounts(conn, principal.tenant, clock.now())}

    @router.get("/v1/messages")
    async def messages(principal: PrincipalDep, contact: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, object]:
        """The send log (R-S8), newest first, optionally for one contact: any key the shop gave it, or the
        phone sent to in any form (`+49 151 …`, `0049…`, a bare wa_id, either WhatsApp form of a Mexican,
        Brazilian or Argentine number); 422 for a `contact` with a NUL character."""
        if contact is not None and not _storable(contact):
            raise RequestValidationError([{"loc": ("query", "contact"), "msg": "contains a NUL character",
                                           "type": "value_error"}])
        phones, wa_ids = phone_forms(contact) if contact is not None else ((), ())
        async with engine.connect() as conn:
            rows = await send_log.recent(conn, principal.tenant, contact, limit, phones=phones, wa_ids=wa_ids)
        return {"tenant": principal.tenant, "messages": rows}

    @router.get("/v1/messages/{idempotency_key}")
    async def message(idempotency_key: str, principal: PrincipalDep) -> dict[str, object]:
        """One message of the send log by its idempotency key (R-S8); 404 when there is none."""
        if not _storable(idempotency_key):
            raise ApiError(404, "not_found", "no such message")
        async with engine.connect() as conn:
            row = await send_log.message(conn, principal.tenant, idempotency_key)
        if row is None:
            raise ApiError(404, "not_found", "no such message")
        return row

    @router.get("/v1/invalid-numbers")
    async def invalid_numbers(principal: PrincipalDep, include_expired: bool = False) -> dict[str, object]:
        """Numbers marked invalid (R-S7) with the error code, when marked and when the mark expires.

        Only marks in force unless `include_expired=true`; a marked number's messages are refused.
        """
        async with engine.connect() as conn:
            rows = await send_log.list_invalid_numbers(conn, principal.tenant, clock.now(),
                                                       include_expired=include_expired)
        return {"tenant": principal.tenant, "invalid_numbers": rows}

    @router.delete("/v1/invalid-numbers/{phone}", status_code=204, responses={403: {}, 404: {}, 422: {}})
    async def unmark(phone: str, principal: PrincipalDep) -> None:
        """Remove a number's invalid mark so later messages to it are sent again (not with a read-only key)."""
        if principal.read_only:
            raise ApiError(403, "forbidden", "a read-only key may not change invalid-number marks")
        number = _phone(phone)
        async with engine.begin() as conn:
            removed = await send_log.delete_invalid_number(conn, principal.tenant, number)
        if not removed:
            raise ApiError(404, "not_marked", f"{number} is not marked invalid")

    return router
