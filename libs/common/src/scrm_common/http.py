"""HTTP pieces every service serves: the app factory (`service_app`), health, readiness, metrics, tenant-key
authentication, request context (correlation ids, the access log) and errors in the documented shape
(CONTRACT §2), with an OpenAPI description that says all of it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import parse_qsl

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scrm_common.cache import MISSING, TtlCache
from scrm_common.contracts import wire
from scrm_common.contracts.wire import NOT_PLAIN
from scrm_common.observability.logging import ACCESS_LOGGER, CORRELATION_ID
from scrm_common.observability.metrics import render

log = logging.getLogger(__name__)
access_log = logging.getLogger(ACCESS_LOGGER)

# ---------------------------------------------------------------------------------------------------------
# The error body (CONTRACT §2):
# `{"error": {"code": "<machine code>", "message": "<human text>"}, "errors": [{"index", "field", "reason"}]}`,
# `errors` only where items or fields are at fault; a 5xx also names its correlation id.

ERROR_CODES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "body_too_large", 422: "invalid_request", 429: "rate_limited",
    500: "internal_error", 503: "unavailable"}
INTERNAL_ERROR_MESSAGE = "internal error; retry later"


class FieldFault(BaseModel):
    """One entry of `errors`: the item's index in a batch (null outside batches), the field at fault
    (a dotted path such as `query.limit` or `events.3.contact.phone`) and why."""

    index: int | None
    field: str
    reason: str


class ErrorInfo(BaseModel):
    """What went wrong: a machine code (`not_found`, `invalid_events`, …) and a human message."""

    code: str
    message: str
    correlation_id: str | None = Field(
        default=None, description="on 5xx answers: the id the service's log line of this failure carries "
                                  "(also the `X-Correlation-Id` response header)")


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer of every service."""

    error: ErrorInfo
    errors: list[FieldFault] | None = Field(default=None, description="only where items or fields are at fault")


_ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The request is malformed.",
    401: "No API key, or one no tenant has (`Authorization: Bearer <key>`).",
    403: "The key's role may not do this (see `x-scrm-roles`), or the tenant is disabled.",
    404: "No such resource for this tenant (also a path holding a control character).",
    405: "The path exists, the method does not.",
    409: "The request conflicts with the current state.",
    413: "The body is too large.",
    422: "A parameter or the body is invalid; `errors` names each field at fault.",
    429: "Over the tenant's rate; retry after `Retry-After` seconds.",
    500: "An unexpected failure; the body and the `X-Correlation-Id` header carry the id of its log line.",
    503: "A dependency is unavailable or the service is draining for a stop; retry later.",
}

# `responses=` entries for FastAPI routes: every documented error status with its body.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text} for status, text in _ERROR_DESCRIPTIONS.items()}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `ERROR_RESPONSES` entries of `statuses`, for a route's `responses=`."""
    return {status: ERROR_RESPONSES[status] for status in statuses}


class ApiError(Exception):
    """An error answered in the documented shape: `raise ApiError(404, "not_marked", "… is not marked")`.

    `errors` lists the fields at fault (`field_error(...)`); `headers` go onto the answer (`Retry-After`).
    """

    def __init__(self, status: int, code: str | None, message: str, *, errors: list[dict[str, Any]] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or ERROR_CODES.get(status, "error")
        self.message = message
        self.errors = errors
        self.headers = headers


def field_error(field: str, reason: str, index: int | None = None) -> dict[str, Any]:
    """One entry of `errors`: the field at fault (dotted path), why, and the item's index in a batch."""
    return {"index": index, "field": field, "reason": reason}


def error_response(status: int, message: str, *, code: str | None = None,
                   errors: list[dict[str, Any]] | None = None,
                   headers: Mapping[str, str] | None = None, correlation_id: str | None = None) -> JSONResponse:
    """A JSON error of `status` in the documented shape; `code` defaults to the status's (`ERROR_CODES`).

    A `correlation_id` goes into the body (`error.correlation_id`) and the `X-Correlation-Id` header.
    """
    error: dict[str, Any] = {"code": code or ERROR_CODES.get(status, "error"), "message": message}
    out_headers = dict(headers) if headers else {}
    if correlation_id is not None:
        error["correlation_id"] = correlation_id
        out_headers["X-Correlation-Id"] = correlation_id
    body: dict[str, Any] = {"error": error}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=out_headers or None)


def _server_error_id(request: Request, status: int) -> str | None:
    """The correlation id a 5xx answer names: the request's (set by `RequestContext`), if any."""
    if status < 500:
        return None
    return getattr(request.state, "correlation_id", None)


def _reason(error: Mapping[str, Any]) -> str:
    """A validation error's reason: a rule's own words (without pydantic's "Value error, " prefix), else its msg."""
    ctx = error.get("ctx") or {}
    if error.get("type") == "value_error" and "error" in ctx:
        return str(ctx["error"])
    return str(error.get("msg"))


def install_error_handlers(app: FastAPI) -> None:
    """Route `ApiError`, FastAPI's HTTP and validation errors and unexpected exceptions through `error_response`.

    A route reports faulty fields by raising `ApiError(..., errors=[field_error(...)])` or
    `HTTPException(status, detail=[{"field", "reason"}, …])`; any other `detail` is the message. Validation
    errors are 422 `invalid_request` with one entry per field. (`service_app` installs these and more.)
    """

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, code=exc.code, errors=exc.errors, headers=exc.headers,
                              correlation_id=_server_error_id(request, exc.status))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
            # FastAPI's answer to a body it could not even decode (not UTF-8): a body at fault, like bad JSON.
            return error_response(422, "invalid request", errors=[field_error("body", _undecodable(exc.__cause__))])
        correlation_id = _server_error_id(request, exc.status_code)
        if isinstance(detail, list):
            return error_response(exc.status_code, "invalid request",
                                  errors=[field_error(str(e.get("field")), str(e.get("reason"))) for e in detail],
                                  headers=exc.headers, correlation_id=correlation_id)
        return error_response(exc.status_code, str(detail), headers=exc.headers, correlation_id=correlation_id)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [field_error(".".join(str(p) for p in e["loc"]), _reason(e)) for e in exc.errors()]
        return error_response(422, "invalid request", errors=errors)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        # Reached only without `RequestContext` (which answers first); the traceback goes to the log, not
        # the client.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, INTERNAL_ERROR_MESSAGE, code="internal_error")



# What `json_body` reads at most unless told otherwise: settings, keys and tenants fit many times over.
JSON_BODY_MAX_BYTES = 64 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)


async def json_body(request: Request, model: type[ModelT], *, max_bytes: int = JSON_BODY_MAX_BYTES) -> ModelT:
    """The request's JSON body as `model`, for a route that takes `Request` so that its auth dependencies
    answer (401/403) before the body is even read — FastAPI parses a declared body first, so an anonymous
    caller would get a 422. Document the body with `openapi_extra=documented_body(model, ...)`.

    413 `body_too_large` over `max_bytes` (with `Connection: close`); 422 `invalid_request` naming `body` for
    text that is not JSON or breaks the wire rules (`contracts.wire`: duplicate keys, depth, control
    characters) and `body.<field>` for each field `model` refuses, exactly as a declared body's errors.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():  # bounded as a whole by `RequestContext`'s limit
        size += len(chunk)
        if size <= max_bytes:
            chunks.append(chunk)
    if size > max_bytes:
        raise ApiError(413, "body_too_large", f"request body over {max_bytes} bytes", headers={"Connection": "close"})
    try:
        value = wire.loads(b"".join(chunks))
    except wire.JsonRefused as exc:
        raise ApiError(422, "invalid_request", "invalid request", errors=[field_error("body", exc.reason)]) from None
    faults = [field_error(".".join(["body", *where]), reason) for where, reason in wire.problems(value)]
    if faults:
        raise ApiError(422, "invalid_request", "invalid request", errors=faults)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


def _undecodable(cause: ValueError) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"not UTF-8 text (byte {cause.start})"
    return "not valid JSON"


# ---------------------------------------------------------------------------------------------------------
# Request context: correlation ids, text a database cannot hold, unexpected failures, the access log.


def sane_correlation_id(value: str | None) -> str:
    """`value` if it is a usable correlation id (1–128 printable ASCII characters), else a fresh one."""
    if value and len(value) <= 128 and value.isascii() and value.isprintable():
        return value
    return uuid.uuid4().hex


def has_control_character(text: str) -> bool:
    """True if `text` breaks the plain-text rule every event's text obeys (`contracts.wire`: a control
    character other than TAB, LF and CR, or a lone surrogate): no key or id we store holds one, and
    PostgreSQL cannot even compare text holding a NUL."""
    return NOT_PLAIN.search(text) is not None


def _printable(text: str, limit: int = 64) -> str:
    """`text` with control characters escaped (`\\x00`), cut to `limit` characters: safe to echo or log."""
    out = "".join(c if unicodedata.category(c) != "Cc" else f"\\x{ord(c):02x}" for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


# The largest request body a service takes unless it says otherwise (`service_app(max_body_bytes=...)`).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# An oversized body is read and thrown away (up to these bounds) before the 413 is sent: a client that
# writes its whole body before reading (urllib, requests) would otherwise see a connection reset instead of
# the answer. Past the bounds the connection is closed on it (the 413 says `Connection: close`).
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_SECONDS = 10.0


class BodyTooLarge(Exception):
    """Raised to the app by `RequestContext`'s `receive` once a body passes its limit (the rest is drained):
    whatever the app answers then, the client gets the 413."""


def body_too_large(limit: int) -> JSONResponse:
    """The 413 for a body over `limit` bytes, with `Connection: close` (what was not read must not be taken
    for the next request)."""
    return error_response(413, f"request body over {limit} bytes", code="body_too_large",
                          headers={"Connection": "close"})


async def _drain(receive: Receive, already: int = 0) -> None:
    """Read and drop what is left of a request body, within `DRAIN_MAX_BYTES` and `DRAIN_MAX_SECONDS`."""
    size = already
    try:
        async with asyncio.timeout(DRAIN_MAX_SECONDS):
            while size <= DRAIN_MAX_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        return


def _declared_length(scope: Scope) -> int | None:
    """The request's Content-Length, when it has a valid one."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class _LimitedBody:
    """`receive` counting body bytes: past `limit` it drains the rest and raises `BodyTooLarge` (and keeps
    raising it), so neither a parser nor a route ever holds more than `limit` bytes."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self.limit = limit
        self._size = 0
        self.exceeded = False

    async def __call__(self) -> Message:
        if self.exceeded:
            raise BodyTooLarge
        message = await self._receive()
        if message["type"] == "http.request":
            self._size += len(message.get("body", b""))
            if self._size > self.limit:
                self.exceeded = True
                if message.get("more_body", False):
                    await _drain(self._receive, self._size)
                raise BodyTooLarge
        return message


class RequestContext:
    """ASGI middleware around every request of a service (installed by `service_app`):

    - gives the request a correlation id — its `X-Correlation-Id` header if sane, else a fresh one — in
      `request.state.correlation_id`, in every log line written while serving it, and in the
      `X-Correlation-Id` response header;
    - refuses a path with a control character (404) or a query parameter with one (422) before any route
      sees it: no identifier holds one, and PostgreSQL refuses NUL in text (it used to be a 500);
    - refuses a body over `max_body_bytes` (None: no limit) with 413 `body_too_large` and `Connection: close`:
      at once when its Content-Length says so, else as soon as the bytes streamed in pass it — before any
      parser or route holds it whole; the rest is drained (bounded) first so that the client reads the 413.
      `on_body_too_large` is called for each such refusal (a service's metric);
    - answers an unexpected exception with a 500 in the documented shape naming the correlation id, and
      logs it once, traceback included, as one JSON line carrying the same id;
    - writes the access log line (logger `scrm.access`): method, route (its template once routed, so ids
      and phone numbers stay out of the log), status, duration in ms; 4xx and 503 at WARNING, other 5xx at
      ERROR, the rest (and the probes /healthz, /readyz, /metrics) at INFO.

    `refuse_control_characters=False` keeps only the correlation id, the 500 and the access log (for an app
    with an error body of its own, such as the WhatsApp simulator's Graph API errors).
    """

    def __init__(self, app: ASGIApp, *, refuse_control_characters: bool = True,
                 max_body_bytes: int | None = None, on_body_too_large: Callable[[], None] | None = None) -> None:
        self.app = app
        self.refuse_control_characters = refuse_control_characters
        self.max_body_bytes = max_body_bytes
        self.on_body_too_large = on_body_too_large or (lambda: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        raw_id = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-correlation-id"), None)
        correlation_id = sane_correlation_id(raw_id)
        scope = {**scope, "state": {**scope.get("state", {}), "correlation_id": correlation_id}}
        status = 500
        response_started = False
        body: _LimitedBody | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if body is not None and body.exceeded and not response_started:
                return  # the app's answer to a body it could not read whole: the 413 follows
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = MutableHeaders(scope=message)
                if "x-correlation-id" not in headers:
                    headers.append("X-Correlation-Id", correlation_id)
            await send(message)

        token = CORRELATION_ID.set(correlation_id)
        try:
            refusal = _refusal(scope) if self.refuse_control_characters else None
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            limit = self.max_body_bytes
            if limit is not None:
                declared = _declared_length(scope)
                if declared is not None and declared > limit:
                    await _drain(receive)
                    self.on_body_too_large()
                    await body_too_large(limit)(scope, receive, send_with_id)
                    return
                receive = body = _LimitedBody(receive, limit)
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if body is not None and body.exceeded and not response_started:
                    pass  # answered below
                else:
                    log.error("unhandled error on %s %s", scope.get("method"),
                              _printable(scope.get("path", ""), 256), exc_info=exc)
                    if response_started:
                        raise
                    await error_response(500, INTERNAL_ERROR_MESSAGE, code="internal_error",
                                         correlation_id=correlation_id)(scope, receive, send_with_id)
            if body is not None and body.exceeded and not response_started:
                self.on_body_too_large()
                refused, body = body.limit, None  # `send_with_id` lets the 413 through
                await body_too_large(refused)(scope, receive, send_with_id)
        finally:
            _log_access(scope, status, started)
            CORRELATION_ID.reset(token)


def _refusal(scope: Scope) -> Response | None:
    """The answer to a request whose path or query holds a control character, else None."""
    if has_control_character(scope.get("path", "")):
        return error_response(404, "no such resource: the path holds a control character")
    query = scope.get("query_string", b"").decode("latin-1")
    faults = [field_error(f"query.{_printable(name)}", "contains a control character")
              for name, value in parse_qsl(query, keep_blank_values=True)
              if has_control_character(name) or has_control_character(value)]
    if faults:
        return error_response(422, "invalid request", errors=faults)
    return None


# Probed every few seconds by runners and orchestrators, their answers are visible there: logged only with
# `SCRM_ACCESS_LOG=all`, even when not ready.
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


def _log_access(scope: Scope, status: int, started: float) -> None:
    route = scope.get("route")
    path = getattr(route, "path", None) or _printable(scope.get("path", ""), 256)
    level = (logging.INFO if status < 400 or path in _PROBES
             else logging.WARNING if status < 500 or status == 503 else logging.ERROR)
    if not access_log.isEnabledFor(level):
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    method = scope.get("method", "")
    access_log.log(level, "%s %s %d %.1fms", method, path, status, duration_ms,
                   extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms})


# ---------------------------------------------------------------------------------------------------------
# The app factory and its OpenAPI description.


def service_app(title: str, version: str, *, description: str = "", max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                on_body_too_large: Callable[[], None] | None = None) -> FastAPI:
    """A service's FastAPI app: errors in the documented shape, `RequestContext`, Swagger UI (`/docs`) and
    ReDoc (`/redoc`) from the fastapi-offline package's local assets (no CDN), and an OpenAPI description
    completed by `complete_openapi`.

    No request body over `max_body_bytes` (1 MiB by default) is read: 413 `body_too_large` (see
    `RequestContext`), `on_body_too_large` called for each."""
    app = FastAPIOffline(title=title, version=version, description=description)
    install_error_handlers(app)
    app.add_middleware(RequestContext, max_body_bytes=max_body_bytes, on_body_too_large=on_body_too_large)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete_openapi(_with_roles(app, FastAPI.openapi(app)))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _with_roles(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    """Write each route's declared roles into its operation (`x-scrm-roles`, a line of its description and
    a documented 403 where some role may not call it)."""
    from fastapi.routing import APIRoute, iter_route_contexts

    # `include_router` leaves included routers lazy in `app.routes`: walk the effective routes.
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        roles = declared_roles(route)
        if roles is None:
            continue
        for method in context.methods or ():
            operation = schema.get("paths", {}).get(context.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation[ROLES_EXTENSION] = list(roles)
            who = "the installation operator token (`SCRM_ADMIN_TOKEN`)" if roles == ("operator",) else \
                "a key with role " + " or ".join(f"`{r}`" for r in roles)
            operation["description"] = f"**Needs** {who}.\n\n" + operation.get("description", "")
            if set(roles) != set(ROLES):
                operation.setdefault("responses", {}).setdefault("403", {"description": _ERROR_DESCRIPTIONS[403]})
    return schema


_REF = "#/components/schemas/"
EXTRA_COMPONENTS = "x-scrm-components"


def complete_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the description say every error answer a route can give, in the body it has (`ErrorBody`).

    Every operation documents 500; one with parameters or a body 422 (FastAPI's own `HTTPValidationError`
    replaced: our 422 is an `ErrorBody`); one with path parameters 404 (control characters); one with a
    security requirement 401. Every 4xx/5xx is `application/json` `ErrorBody`, whatever the route's own
    response class. Component schemas an operation carries under `x-scrm-components` (see
    `documented_body`) are moved into `components.schemas`.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    error_schema = ErrorBody.model_json_schema(ref_template=_REF + "{model}")
    components.update(error_schema.pop("$defs", {}))
    components["ErrorBody"] = error_schema

    def error(status: int) -> dict[str, Any]:
        return {"description": _ERROR_DESCRIPTIONS[status],
                "content": {"application/json": {"schema": {"$ref": _REF + "ErrorBody"}}}}

    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            components.update(operation.pop(EXTRA_COMPONENTS, {}))
            responses = operation.setdefault("responses", {})
            params = operation.get("parameters", [])
            if params or "requestBody" in operation:
                if responses.get("422", {}).get("description") == "Validation Error":  # FastAPI's own
                    del responses["422"]
                responses.setdefault("422", error(422))
            if any(p.get("in") == "path" for p in params):
                responses.setdefault("404", error(404))
            if operation.get("security"):
                responses.setdefault("401", error(401))
            responses.setdefault("500", error(500))
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = error(500)["content"]
    if _REF + "HTTPValidationError" not in json.dumps(schema.get("paths")):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def documented_body(tp: Any, *, description: str, examples: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON request body of type `tp` for a route that reads its body itself
    (so FastAPI does not parse it): the schema, with its component schemas, and named examples."""
    body_schema = TypeAdapter(tp).json_schema(ref_template=_REF + "{model}")
    defs = body_schema.pop("$defs", {})
    content: dict[str, Any] = {"schema": body_schema}
    if examples:
        content["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"requestBody": {"required": True, "description": description, "content": {"application/json": content}},
            EXTRA_COMPONENTS: defs}


# ---------------------------------------------------------------------------------------------------------
# Operations endpoints.


class Health(BaseModel):
    """`GET /healthz`: the process lives."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """`GET /readyz`: the service can do its work (a 503 in the error shape when it cannot)."""

    status: Literal["ready"]


METRICS_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus text exposition format",
          "content": {"text/plain": {"schema": {"type": "string"}}}}}


def ops_router(registry: CollectorRegistry, ready: Callable[[], Awaitable[bool]]) -> APIRouter:
    """`/healthz` (the process lives), `/readyz` (it can do its work), `/metrics` (Prometheus text)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The process lives."""
        return Health(status="ok")

    @router.get("/readyz", response_model=Readiness, responses=error_responses(503))
    async def readyz() -> Readiness:
        """The service can do its work: its database answers and its consumers have their partitions."""
        if not await ready():
            raise ApiError(503, "not_ready", "not ready: a dependency is unavailable or the service is starting")
        return Readiness(status="ready")

    @router.get("/metrics", response_class=PlainTextResponse, responses=METRICS_RESPONSE)
    async def metrics() -> Response:
        """Every metric of this process in the Prometheus text format."""
        body, content_type = render(registry)
        return Response(body, media_type=content_type)

    return router


# ---------------------------------------------------------------------------------------------------------
# Tenant API keys.

# The bearer scheme every protected route declares (so /docs can try them); `auto_error=False` keeps a
# missing key a 401 in our body instead of FastAPI's 403.
BEARER = HTTPBearer(auto_error=False, scheme_name="TenantApiKey",
                    description="A tenant API key: `Authorization: Bearer <key>`.")


def hash_api_key(key: str) -> str:
    """How API keys are stored: SHA-256 hex (keys are long random strings, so no salt is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh random API key."""
    return "scrm_" + secrets.token_urlsafe(32)


def _missing_key() -> ApiError:
    return ApiError(401, "unauthorized", "missing bearer API key", headers={"WWW-Authenticate": "Bearer"})


def unknown_key() -> ApiError:
    """The 401 for a key no tenant has."""
    return ApiError(401, "unauthorized", "unknown API key", headers={"WWW-Authenticate": "Bearer"})


def bearer_token(request: Request) -> str:
    """The bearer token of a request, or 401."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _missing_key()
    return token.strip()


async def api_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> str:
    """FastAPI dependency: the request's bearer API key, or 401; declares the bearer scheme in the OpenAPI."""
    if credentials is None or not credentials.credentials.strip():
        raise _missing_key()
    return credentials.credentials.strip()


ApiKey = Annotated[str, Depends(api_key)]


Role = Literal["events", "read", "admin"]
ROLES: tuple[Role, ...] = ("events", "read", "admin")
# Which roles may call what (CONTRACT §2): an `events` key posts shop events and nothing else; a `read`
# key every GET of its tenant and nothing else; an `admin` key is the tenant's owner: it may do all of it,
# and change the tenant's accounts, templates, flows, settings and keys.
EVENTS: tuple[Role, ...] = ("events", "admin")
READ: tuple[Role, ...] = ("read", "admin")
ADMIN: tuple[Role, ...] = ("admin",)
# The header carrying `SCRM_INTERNAL_TOKEN` on service-to-service calls (key introspection).
INTERNAL_TOKEN_HEADER = "X-Scrm-Internal-Token"
# The OpenAPI extension naming the roles an operation accepts (`operator`: the installation's token).
ROLES_EXTENSION = "x-scrm-roles"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant's key with its role, and the key's id (recorded as who changed what)."""

    tenant: str
    role: Role
    key_id: str = ""

    @property
    def read_only(self) -> bool:
        """True for a key that may not change anything (`read`, and `events` outside posting events)."""
        return self.role != "admin"


def forbidden(role: str, roles: tuple[str, ...]) -> ApiError:
    """The 403 for a key whose role may not do this."""
    return ApiError(403, "forbidden", f"a key with role {role!r} may not do this; it needs role "
                                      + " or ".join(repr(r) for r in roles))


# What the introspection cache holds for a key whose tenant is disabled (None: unknown or revoked).
_DISABLED = "tenant_disabled"


def _error_code(resp: httpx.Response) -> str | None:
    """The `error.code` of an answer in the documented error body, or None."""
    try:
        body = resp.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


class KeyIntrospection:
    """Resolves API keys through ingest (which owns them), caching each answer for `ttl_seconds`.

    `ttl_seconds` (`SCRM_KEY_CACHE_SECONDS`, at most 30) bounds how long a revoked key or a disabled tenant
    keeps working on this replica. Ingest's introspection endpoint answers only callers presenting
    `internal_token` (`SCRM_INTERNAL_TOKEN`) in the `X-Scrm-Internal-Token` header.
    """

    def __init__(self, ingest_url: str, *, internal_token: str, ttl_seconds: float = 10.0,
                 client: httpx.AsyncClient | None = None):
        self._url = ingest_url.rstrip("/") + "/internal/v1/keys/introspect"
        self._headers = {INTERNAL_TOKEN_HEADER: internal_token}
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._cache: TtlCache[str, Principal | str | None] = TtlCache(ttl=ttl_seconds, maxsize=50_000)
        self._unknown_shape_logged = False

    async def principal(self, token: ApiKey) -> Principal:
        """FastAPI dependency: the caller's principal, whatever its role; 401 for no key or an unknown one,
        503 when ingest cannot be asked or answers without a tenant or a known role. Routes use
        `require(...)`, which also checks the role."""
        digest = hash_api_key(token)
        hit = self._cache.get(digest, MISSING)
        if hit is MISSING:
            try:
                resp = await self._client.post(self._url, json={"api_key": token}, headers=self._headers)
            except httpx.HTTPError:
                raise ApiError(503, "unavailable", "key service unavailable") from None
            principal: Principal | str | None = None
            if resp.status_code == 200:
                principal = self._principal_of(resp)
            elif resp.status_code == 404:
                principal = _DISABLED if _error_code(resp) == "tenant_disabled" else None
            else:
                if resp.status_code in (401, 403):
                    log.error("ingest refused this service's SCRM_INTERNAL_TOKEN: every service of an "
                              "installation needs the same value")
                raise ApiError(503, "unavailable", "key service unavailable")
            self._cache.put(digest, principal)
            hit = principal
        if hit is _DISABLED:
            raise ApiError(401, "unauthorized", "this API key's tenant is disabled",
                           headers={"WWW-Authenticate": "Bearer"})
        if not isinstance(hit, Principal):
            raise unknown_key()
        return hit

    def _principal_of(self, resp: httpx.Response) -> Principal:
        """The principal of a 200 answer, or 503 (not cached) when it lacks a tenant or a known role, as an
        older ingest answers during a rolling upgrade; logged once (a service has one `KeyIntrospection`)."""
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            tenant, role, key_id = body.get("tenant"), body.get("role"), body.get("key_id")
            if isinstance(tenant, str) and tenant and role in ROLES:
                return Principal(tenant=tenant, role=role, key_id=key_id if isinstance(key_id, str) else "")
        if not self._unknown_shape_logged:
            self._unknown_shape_logged = True
            log.error("ingest's key introspection answered without a tenant or a known role (fields: %s): is "
                      "ingest older than this service? Keys answer 503 until it is upgraded",
                      ", ".join(sorted(body)) if isinstance(body, dict) else type(body).__name__)
        raise ApiError(503, "unavailable", "key service answered in an unknown shape")

    def require(self, roles: tuple[Role, ...]) -> Callable[..., Awaitable[Principal]]:
        """FastAPI dependency: the caller's principal if its role is one of `roles`, else 403 `forbidden`
        (401/503 as `principal`). The roles appear in the route's OpenAPI as `x-scrm-roles`."""

        async def dependency(token: ApiKey) -> Principal:
            principal = await self.principal(token)
            if principal.role not in roles:
                raise forbidden(principal.role, roles)
            return principal

        dependency.scrm_roles = roles  # type: ignore[attr-defined]  # read by `service_app`'s OpenAPI
        return dependency

    def forget(self, api_key: str) -> None:
        """Drop a key's cached answer (after revoking it through this process)."""
        self._cache.pop(hash_api_key(api_key))

    async def aclose(self) -> None:
        await self._client.aclose()


def declared_roles(route: Any) -> tuple[str, ...] | None:
    """The roles a FastAPI route's dependencies declare (`scrm_roles` on a dependency), or None."""
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        roles = getattr(dependant.call, "scrm_roles", None)
        if roles is not None:
            return tuple(roles)
        stack.extend(dependant.dependencies)
    return None


# Errors the routes behind `KeyIntrospection.principal` may answer besides their own.
KEY_ERRORS = error_responses(401, 503)

