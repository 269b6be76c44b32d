"""Errors in the documented shape on every 4xx/5xx of the segmenter (CONTRACT §2).

`{"error": {"code": "<machine code>", "message": "<human text>"}, "errors": [{"index", "field", "reason"}]}`,
`errors` only where fields are at fault.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
          409: "conflict", 413: "body_too_large", 422: "invalid_request", 429: "rate_limited", 503: "unavailable"}


def field_error(field: str, reason: str) -> dict[str, Any]:
    """One entry of `errors`: the field at fault (dotted path) and why."""
    return {"index": None, "field": field, "reason": reason}


def error_response(status: int, message: str, *, code: str | None = None,
                   errors: list[dict[str, Any]] | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON error of `status` in the documented shape."""
    body: dict[str, Any] = {"error": {"code": code or _CODES.get(status, "error"), "message": message}}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def install_error_handlers(app: FastAPI) -> None:
    """Route FastAPI's HTTP and validation errors through `error_response`."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(detail, list):  # field errors raised by a route: [{"field", "reason"}]
            return error_response(exc.status_code, "invalid request",
                                  errors=[field_error(str(e.get("field")), str(e.get("reason"))) for e in detail],
                                  headers=exc.headers)
        return error_response(exc.status_code, str(detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [field_error(".".join(str(p) for p in e["loc"]), str(e["msg"])) for e in exc.errors()]
        return error_response(422, "invalid request", errors=errors)
