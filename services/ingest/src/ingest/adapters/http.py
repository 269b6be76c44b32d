"""Ingest's HTTP API: `POST /v1/events`, Meta webhooks, key introspection for sibling services.

(Tenants and keys: `ingest.adapters.admin_http`.)"""


import asyncio
import hmac
import json
import logging
import time
import typing
import uuid
from typing import Annotated, Union

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from ingest.adapters.auth import TenantKeys
from ingest.adapters.db import TenantDirectory
from ingest.adapters.kafka import EventPublisher
from ingest.config import Settings
from ingest.domain.batch import PLATFORM_PRODUCED, FieldError, parse_batch, read_body
from ingest.domain.rate_limit import TokenBucket
from ingest.domain.webhooks import Skipped, Translated, model, route, signature_valid, translate
from scrm_common.clock import Clock
from scrm_common.contracts.events import Event
from scrm_common.http import (
    EVENTS,
    INTERNAL_TOKEN_HEADER,
    ApiError,
    Principal,
    documented_body,
    error_response,
    error_responses,
    json_body,
    sane_correlation_id,
)
from scrm_common.http import install_error_handlers as install_error_handlers  # the services' one, re-exported
from scrm_common.observability.metrics import LATENCY_BUCKETS
from scrm_common.runtime import INTAKE

log = logging.getLogger(__name__)


class Accepted(BaseModel):
    """202: every event of the request is stored on the broker (acks=all)."""

    accepted: int


class WebhookReceived(BaseModel):
    """200: how many events the webhook's items became (skipped items are counted and logged, not answered)."""

    received: int


class IntrospectRequest(BaseModel):
    """Body of the internal key introspection: the key to resolve."""

    api_key: str


# What `POST /v1/events` takes, for the OpenAPI description only: the route reads and checks the body itself
# (`parse_batch`: one precise error per bad event, limits on size and depth). Types the platform produces
# itself are left out: a shop key posting one gets 422.
_SHOP_EVENTS = tuple(m for m in typing.get_args(typing.get_args(Event)[0])
                     if typing.get_args(m.model_fields["type"].annotation)[0] not in PLATFORM_PRODUCED)
ShopEvent = Annotated[Union[_SHOP_EVENTS], Field(discriminator="type")]  # noqa: UP007 - a union built at runtime


class EventBatch(BaseModel):
    """Up to 1000 events, accepted or rejected whole."""

    model_config = ConfigDict(extra="forbid")

    events: list[ShopEvent] = Field(max_length=1000)  # type: ignore[valid-type]


PAYMENT_EXAMPLE = {
    "event_id": "pay-8f3a", "type": "payment.succeeded", "occurred_at": "2026-11-22T09:59:58Z",
    "contact": {"external_id": "cust-42", "phone": "+4915112345678", "name": "Anna", "locale": "de-DE",
                "timezone": "Europe/Berlin"},
    "data": {"order_id": "A58B2C", "amount": 149.90, "currency": "EUR", "tax": 23.93, "shipping": 4.90, "region": "DE",
             "items": [{"sku": "S1", "name": "Sneaker", "category": "apparel", "price": 120.0, "quantity": 1}]}}
EVENTS_BODY = documented_body(
    ShopEvent | EventBatch,
    description="One event, or `{\"events\": [...]}` with at most 1000. Each type has its `data` schema "
                "(CONTRACT §2); types the platform produces itself (message.status, link.clicked, …) are refused.",
    examples={"one payment": PAYMENT_EXAMPLE,
              "a batch": {"events": [{"event_id": "c-1", "type": "contact.created",
                                      "occurred_at": "2026-11-22T09:00:00Z",
                                      "contact": {"external_id": "cust-43", "name": "Ben"},
                                      "data": {"opted_in": True, "tags": ["vip"]}}]}})


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("scrm_ingest_events_total", "Events accepted and published", ["type"],
                              registry=registry)
        self.rejected = Counter("scrm_ingest_rejected_requests_total", "Requests rejected", ["status"],
                                registry=registry)
        self.webhooks = Counter("scrm_ingest_webhook_events_total", "Events produced from Meta webhooks",
                                ["type"], registry=registry)
        self.webhook_skipped = Counter("scrm_ingest_webhook_skipped_total",
                                       "Webhook items not turned into an event, by field, item type and reason",
                                       ["field", "type", "reason"], registry=registry)
        self.webhook_repaired = Counter("scrm_ingest_webhook_repaired_total",
                                        "Events produced from repaired webhook items (bad timestamp, bad text)",
                                        ["field", "type", "reason"], registry=registry)
        self.publish_seconds = Histogram("scrm_ingest_publish_duration_seconds",
                                         "Time from request to broker acknowledgement",
                                         buckets=LATENCY_BUCKETS, registry=registry)


# How long a client is asked to wait while the stack drains for a stop (seconds).
DRAIN_RETRY_AFTER_SECONDS = 30


class _TooLarge(Exception):
    pass


# An oversized body is read and thrown away (up to these bounds) before the 413 is sent: a client
# that writes its whole body before reading (urllib, requests) would otherwise get a connection
# reset instead of the answer. Past the bounds the connection is closed on it.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
DRAIN_MAX_SECONDS = 10.0


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, at most `limit` bytes; raises _TooLarge after draining an oversized one (bounded)."""
    declared = request.headers.get("content-length")
    too_large = declared is not None and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + DRAIN_MAX_SECONDS if too_large else None) as deadline:
            async for chunk in request.stream():
                size += len(chunk)
                if not too_large and size > limit:
                    too_large = True
                    chunks.clear()
                    deadline.reschedule(loop.time() + DRAIN_MAX_SECONDS)
                if not too_large:
                    chunks.append(chunk)
                elif size > DRAIN_MAX_BYTES:
                    break
    except (TimeoutError, ClientDisconnect):
        if not too_large:
            raise
    if too_large:
        raise _TooLarge
    return b"".join(chunks)


def app_body_limit(settings: Settings) -> int:
    """The body limit of ingest's app as a whole (`service_app(max_body_bytes=...)`): the largest of its
    routes' own, so `POST /v1/events` and the webhook keep theirs (and their drain) and every other route
    (tenants, keys, introspection) is bounded as well."""
    return max(settings.max_body_bytes, settings.max_webhook_bytes)


def _too_large(limit: int, what: str) -> JSONResponse:
    # `Connection: close`: what was not drained must not be read as the next request.
    return _error(413, "body_too_large", f"{what} over {limit} bytes", headers={"Connection": "close"})


def _error(status: int, code: str, message: str, errors: list[FieldError] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    return error_response(status, message, code=code, errors=None if errors is None else [e.as_dict() for e in errors],
                          headers=headers)


# Skips that are expected in normal traffic are logged at INFO; the rest say something is off.
_EXPECTED_SKIPS = frozenset({model.ECHO, model.CALL, model.EDIT, model.REVOKE, model.GROUP, model.PLAYED,
                             model.REQUEST_WELCOME, model.IDENTITY_CHANGED})


def _log_item(what: str, item: Skipped) -> None:
    """One JSON log line per skipped or repaired webhook item, with its reason and Meta's error codes."""
    level = logging.INFO if what.endswith("repaired") or item.reason in _EXPECTED_SKIPS else logging.WARNING
    log.log(level, "%s: %s (field=%s type=%s error_codes=%s detail=%s)", what, item.reason, item.field or "-",
            item.type or "-", ",".join(map(str, item.error_codes)) or "-", item.detail or "-", extra=item.as_log())


# Webhook routes are called by Meta, not with a key: what authenticates them, for the OpenAPI's `x-scrm-roles`.
WEBHOOK_SIGNED = {"x-scrm-roles": ["meta-signature"]}
WEBHOOK_VERIFY = {"x-scrm-roles": ["meta-verify-token"]}


def build_router(
    *, settings: Settings, directory: TenantDirectory, publisher: EventPublisher, clock: Clock,
    metrics: IngestMetrics, keys: TenantKeys | None = None,
) -> APIRouter:
    """`POST /v1/events` (a key with role `events` or `admin`), the webhook routes and key introspection.

    `keys` resolves tenant keys (default: through `directory`, counting refusals in `metrics.rejected`).
    """
    router = APIRouter()
    buckets: dict[str, TokenBucket] = {}
    keys = keys or TenantKeys(directory, on_refused=lambda status: metrics.rejected.labels(str(status)).inc())
    # The hot path: a key's answer is cached on this replica for at most SCRM_KEY_CACHE_SECONDS.
    EventsKey = Annotated[Principal, Depends(keys.require(EVENTS, cached=True))]

    @router.post("/v1/events", status_code=202, response_model=Accepted, tags=["events"],
                 responses=error_responses(401, 403, 413, 422, 429, 503), openapi_extra=EVENTS_BODY)
    async def post_events(request: Request, principal: EventsKey) -> JSONResponse:
        """Accept one event or a batch of up to 1000; 202 only once the broker has them all.

        A `read` key gets 403 `forbidden`; types the platform produces itself (`message.status`,
        `link.clicked`, `account.*`, …) are refused with 422 whatever the key. While the stack drains for a
        stop (`INTAKE` closed) nothing new is taken: 503 with `Retry-After`.
        """
        if not INTAKE.open:
            metrics.rejected.labels("503").inc()
            return _error(503, "draining", "the service is stopping; nothing was accepted, retry later",
                          headers={"Retry-After": str(DRAIN_RETRY_AFTER_SECONDS)})
        try:
            raw = await _read_limited(request, settings.max_body_bytes)
        except _TooLarge:
            metrics.rejected.labels("413").inc()
            return _too_large(settings.max_body_bytes, "request body")
        body, bad_json = read_body(raw)  # duplicate keys, depth, control characters: parse_batch, per event
        if bad_json is not None:
            metrics.rejected.labels("422").inc()
            return _error(422, "invalid_json", "body is not valid JSON", [bad_json])
        events, errors = parse_batch(body, max_events=settings.max_batch_events,
                                     refused_types=PLATFORM_PRODUCED, received_at=clock.now())
        if errors:
            metrics.rejected.labels("422").inc()
            return _error(422, "invalid_events", "the batch was rejected whole; nothing was accepted", errors)
        now = time.monotonic()
        bucket = buckets.get(principal.tenant)
        if bucket is None:
            bucket = buckets[principal.tenant] = TokenBucket.full(
                settings.ingest_rate_per_second, settings.ingest_burst, now)
        wait = bucket.take(len(events), now)
        if wait > 0:
            metrics.rejected.labels("429").inc()
            return _error(429, "rate_limited", "over the tenant's ingest rate",
                          headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        correlation_id = getattr(request.state, "correlation_id", None) or sane_correlation_id(
            request.headers.get("x-correlation-id"))
        records = publisher.encode(principal.tenant, events, ingested_at=clock.now(), correlation_id=correlation_id)
        too_big = [FieldError(i, "(event)", f"event is {len(r[1])} bytes encoded; at most {settings.max_event_bytes}")
                   for i, r in enumerate(records) if len(r[1]) > settings.max_event_bytes]
        if too_big:
            metrics.rejected.labels("422").inc()
            return _error(422, "invalid_events", "the batch was rejected whole; nothing was accepted", too_big)
        started = time.perf_counter()
        try:
            await publisher.send(records)
        except KafkaError as exc:
            log.error("publish failed: %r", exc, extra={"tenant": principal.tenant})
            metrics.rejected.labels("503").inc()
            return _error(503, "broker_unavailable", "events could not be stored; retry",
                          headers={"Retry-After": "1"})
        metrics.publish_seconds.observe(time.perf_counter() - started)
        for event in events:
            metrics.events.labels(event.type).inc()
        return JSONResponse({"accepted": len(events)}, status_code=202)

    @router.get("/v1/webhooks/whatsapp", response_class=PlainTextResponse, response_model=None, tags=["webhooks"],
                responses={200: {"description": "the challenge, echoed",
                                 "content": {"text/plain": {"schema": {"type": "string"}}}},
                           **error_responses(403)}, openapi_extra=WEBHOOK_VERIFY)
    async def verify_webhook(
        mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
    ) -> PlainTextResponse | JSONResponse:
        """Meta's verification handshake (CLOUD-API.md §5.1): the challenge as plain text when the token
        matches, else 403 in the documented error shape (Meta reads only the status)."""
        if mode == "subscribe" and token is not None and challenge is not None and hmac.compare_digest(
                token.encode(), settings.whatsapp_verify_token.encode()):
            return PlainTextResponse(challenge)
        return _error(403, "verification_failed", "hub.mode must be subscribe and hub.verify_token must match")

    @router.post("/v1/webhooks/whatsapp", response_model=WebhookReceived, tags=["webhooks"],
                 responses=error_responses(400, 401, 413, 503),
                 openapi_extra={**WEBHOOK_SIGNED,
                                "requestBody": {"required": True, "description": "Meta's webhook payload "
                                                "(CLOUD-API.md §5), signed with the app secret",
                                                "content": {"application/json": {"schema": {"type": "object"}}}}})
    async def receive_webhook(
        request: Request,
        _signature: Annotated[str | None, Header(alias="X-Hub-Signature-256", description=(
            "`sha256=` + hex HMAC-SHA256 of the raw body with the app secret; anything else is 401"))] = None,
    ) -> JSONResponse:
        """Every item of a Meta webhook as an event or a counted, logged skip; verified before it is parsed.

        Each event goes to the tenant owning its phone number id (else its WABA), as learnt from the sender's
        `account.*` events. An item for a number nobody owns, or of a disabled tenant, is answered 200 all the
        same (Meta would retry for days otherwise), counted in `scrm_ingest_webhook_skipped_total` (reason
        `unknown_number`, `unknown_account` or `tenant_disabled`), logged, and published nowhere."""
        try:
            raw = await _read_limited(request, settings.max_webhook_bytes)
        except _TooLarge:
            metrics.rejected.labels("413").inc()
            return _too_large(settings.max_webhook_bytes, "webhook body")
        if not signature_valid(settings.whatsapp_app_secret, raw, request.headers.get("x-hub-signature-256")):
            metrics.rejected.labels("401").inc()
            return _error(401, "bad_signature", "missing or invalid X-Hub-Signature-256")
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            metrics.rejected.labels("400").inc()
            return _error(400, "invalid_json", "webhook body is not JSON")
        received_at = clock.now()
        try:
            translated = translate(payload, now=received_at)
        except Exception:  # translate never raises by design; if it does, Meta must not retry for days
            log.exception("webhook translation failed")
            translated = Translated([], [Skipped("", "payload", model.MALFORMED, (), "translation failed")], [])
        numbers = {n: await directory.tenant_of_number(n)
                   for n in {e.phone_number_id for e in translated.events if e.phone_number_id}}
        accounts = {w: await directory.tenant_of_waba(w)
                    for w in {e.waba_id for e in translated.events if e.phone_number_id is None and e.waba_id}}
        owners = {t for t in (*numbers.values(), *accounts.values()) if t is not None}
        disabled = {t for t in owners if await directory.is_disabled(t)}
        by_tenant, unrouted = route(translated.events, numbers=numbers, accounts=accounts, disabled=disabled)
        try:
            for tenant, events in by_tenant.items():
                await publisher.publish(tenant, events, ingested_at=received_at, correlation_id=uuid.uuid4().hex)
        except KafkaError:
            # Meta retries non-2xx deliveries; consumers dedupe on the derived event ids.
            return _error(503, "broker_unavailable", "retry later")
        for events in by_tenant.values():
            for event in events:
                metrics.webhooks.labels(event.type).inc()
        for skipped in [*translated.skipped, *unrouted]:
            metrics.webhook_skipped.labels(skipped.field, skipped.type, skipped.reason).inc()
            _log_item("webhook item skipped", skipped)
        for repaired in translated.repaired:
            metrics.webhook_repaired.labels(repaired.field, repaired.type, repaired.reason).inc()
            _log_item("webhook item repaired", repaired)
        return JSONResponse({"received": sum(len(e) for e in by_tenant.values())})

    def internal_caller(request: Request) -> None:
        """A sibling service: it presents `SCRM_INTERNAL_TOKEN` (compared in constant time), else 401."""
        presented = request.headers.get(INTERNAL_TOKEN_HEADER, "")
        if not hmac.compare_digest(presented.encode(), settings.internal_token.encode()):
            raise ApiError(401, "unauthorized", "introspection needs the installation's internal token")

    @router.post("/internal/v1/keys/introspect", include_in_schema=False)
    async def introspect(request: Request) -> JSONResponse:
        """For sibling services presenting `SCRM_INTERNAL_TOKEN`: the tenant, role and id of a key, read from
        the database (never cached here: the caller's own cache is the only one, so the revocation bound is
        `SCRM_KEY_CACHE_SECONDS`).

        401 without the right internal token — checked before the body is read, so an anonymous caller gets
        no 422 and has nothing buffered; 404 `unknown_key` for a key that is unknown or revoked, 404
        `tenant_disabled` for one whose tenant is disabled (the services then answer 401 saying which);
        413/422 for a body over 64 KiB or not `{"api_key": "<key>"}`."""
        internal_caller(request)
        body = await json_body(request, IntrospectRequest)
        found = await directory.lookup(body.api_key)
        principal = found.principal
        if principal is None:
            if found.tenant_disabled:  # the services then say so, as ingest's own routes do
                return _error(404, "tenant_disabled", "this API key's tenant is disabled")
            return _error(404, "unknown_key", "no tenant has this API key")
        return JSONResponse({"tenant": principal.tenant, "role": principal.role, "key_id": principal.key_id})

    return router
