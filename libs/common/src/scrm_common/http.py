"""HTTP pieces every service serves: health, readiness, metrics, tenant-key authentication, and errors
in the documented shape."""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from scrm_common.cache import MISSING, TtlCache
from scrm_common.observability.metrics import render


def ops_router(registry: CollectorRegistry, ready: Callable[[], Awaitable[bool]]) -> APIRouter:
    """`/healthz` (the process lives), `/readyz` (it can do its work), `/metrics`."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> Response:
        if await ready():
            return Response('{"status":"ready"}', media_type="application/json")
        return Response('{"status":"not ready"}', status_code=503, media_type="application/json")

    @router.get("/metrics")
    async def metrics() -> Response:
        body, content_type = render(registry)
        return Response(body, media_type=content_type)

    return router


def hash_api_key(key: str) -> str:
    """How API keys are stored: SHA-256 hex (keys are long random strings, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh random API key."""
    return "scrm_" + secrets.token_urlsafe(32)


def bearer_token(request: Request) -> str:
    """The bearer token of a request, or 401."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, detail="missing bearer API key", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant, with or without write access."""

    tenant: str
    read_only: bool


class KeyIntrospection:
    """Resolves API keys through ingest (which owns them), caching answers briefly."""

    def __init__(self, ingest_url: str, *, ttl_seconds: float = 30.0, client: httpx.AsyncClient | None = None):
        self._url = ingest_url.rstrip("/") + "/internal/v1/keys/introspect"
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._cache: TtlCache[str, Principal | None] = TtlCache(ttl=ttl_seconds, maxsize=50_000)

    async def principal(self, request: Request) -> Principal:
        """FastAPI dependency: the caller's principal, or 401."""
        token = bearer_token(request)
        digest = hash_api_key(token)
        hit = self._cache.get(digest, MISSING)
        if hit is MISSING:
            try:
                resp = await self._client.post(self._url, json={"api_key": token})
            except httpx.HTTPError:
                raise HTTPException(503, detail="key service unavailable") from None
            principal = None
            if resp.status_code == 200:
                body = resp.json()
                principal = Principal(tenant=body["tenant"], read_only=bool(body.get("read_only")))
            elif resp.status_code != 404:
                raise HTTPException(503, detail="key service unavailable")
            self._cache.put(digest, principal)
            hit = principal
        if not isinstance(hit, Principal):
            raise HTTPException(401, detail="unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return hit

    async def aclose(self) -> None:
        await self._client.aclose()


# Errors in the documented shape on every 4xx/5xx (CONTRACT §2):
# `{"error": {"code": "<machine code>", "message": "<human text>"}, "errors": [{"index", "field", "reason"}]}`,
# `errors` only where fields are at fault.
ERROR_CODES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "body_too_large", 422: "invalid_request", 429: "rate_limited", 503: "unavailable"}


def field_error(field: str, reason: str, index: int | None = None) -> dict[str, Any]:
    """One entry of `errors`: the field at fault (dotted path), why, and the item's index in a batch."""
    return {"index": index, "field": field, "reason": reason}


def error_response(status: int, message: str, *, code: str | None = None,
                   errors: list[dict[str, Any]] | None = None,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """A JSON error of `status` in the documented shape; `code` defaults to the status's (`ERROR_CODES`)."""
    body: dict[str, Any] = {"error": {"code": code or ERROR_CODES.get(status, "error"), "message": message}}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def install_error_handlers(app: FastAPI) -> None:
    """Route FastAPI's HTTP and validation errors through `error_response`.

    A route reports faulty fields by raising `HTTPException(status, detail=[{"field", "reason"}, …])`;
    any other `detail` is the message. Validation errors are 422 `invalid_request` with one entry per field.
    """

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if isinstance(detail, list):
            return error_response(exc.status_code, "invalid request",
                                  errors=[field_error(str(e.get("field")), str(e.get("reason"))) for e in detail],
                                  headers=exc.headers)
        return error_response(exc.status_code, str(detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [field_error(".".join(str(p) for p in e["loc"]), str(e["msg"])) for e in exc.errors()]
        return error_response(422, "invalid request", errors=errors)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # Even a bug answers in the documented shape; the traceback goes to the log, not the client.
        logging.getLogger(__name__).error("unhandled error on %s %s", request.method, request.url.path,
                                          exc_info=exc)
        return error_response(500, "internal error; retry later", code="internal_error")
