"""Ingest's HTTP API: `POST /v1/events`, Meta webhooks, key introspection for sibling services."""


import hmac
import json
import logging
import time
import uuid
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel

from ingest.adapters.db import TenantDirectory
from ingest.adapters.kafka import EventPublisher
from ingest.config import Settings
from ingest.domain.batch import PLATFORM_PRODUCED, FieldError, parse_batch
from ingest.domain.rate_limit import TokenBucket
from ingest.domain.webhooks import signature_valid, translate
from scrm_common.clock import Clock
from scrm_common.http import Principal, bearer_token
from scrm_common.observability.metrics import LATENCY_BUCKETS

log = logging.getLogger(__name__)


class Accepted(BaseModel):
    accepted: int


class IntrospectRequest(BaseModel):
    api_key: str


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("scrm_ingest_events_total", "Events accepted and published", ["type"],
                              registry=registry)
        self.rejected = Counter("scrm_ingest_rejected_requests_total", "Requests rejected", ["status"],
                                registry=registry)
        self.webhooks = Counter("scrm_ingest_webhook_events_total", "Events produced from Meta webhooks",
                                ["type"], registry=registry)
        self.webhook_skipped = Counter("scrm_ingest_webhook_skipped_total",
                                       "Webhook items skipped (unknown number, unsupported type)",
                                       registry=registry)
        self.publish_seconds = Histogram("scrm_ingest_publish_duration_seconds",
                                         "Time from request to broker acknowledgement",
                                         buckets=LATENCY_BUCKETS, registry=registry)


class _TooLarge(Exception):
    pass


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, code: str, message: str, errors: list[FieldError] | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if errors is not None:
        body["errors"] = [e.as_dict() for e in errors]
    return JSONResponse(body, status_code=status, headers=headers)


def build_router(
    *, settings: Settings, directory: TenantDirectory, publisher: EventPublisher, clock: Clock,
    metrics: IngestMetrics,
) -> APIRouter:
    router = APIRouter()
    buckets: dict[str, TokenBucket] = {}

    async def tenant_principal(request: Request) -> Principal:
        principal = await directory.principal_for(bearer_token(request))
        if principal is None:
            raise HTTPException(401, detail="unknown API key", headers={"WWW-Authenticate": "Bearer"})
        return principal

    PrincipalDep = Annotated[Principal, Depends(tenant_principal)]

    @router.post("/v1/events", status_code=202, response_model=Accepted,
                 responses={401: {}, 413: {}, 422: {}, 429: {}, 503: {}})
    async def post_events(request: Request, principal: PrincipalDep) -> JSONResponse:
        """Accept one event or a batch of up to 1000; 202 only once the broker has them all."""
        if principal.read_only:
            metrics.rejected.labels("403").inc()
            return _error(403, "read_only_key", "this API key may only read")
        try:
            raw = await _read_limited(request, settings.max_body_bytes)
        except _TooLarge:
            metrics.rejected.labels("413").inc()
            return _error(413, "body_too_large", f"request body over {settings.max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            metrics.rejected.labels("422").inc()
            return _error(422, "invalid_json", "body is not valid JSON",
                          [FieldError(None, "(body)", str(exc))])
        events, errors = parse_batch(body, max_events=settings.max_batch_events,
                                     refused_types=PLATFORM_PRODUCED)
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
        correlation_id = request.headers.get("x-correlation-id", "")
        if not (0 < len(correlation_id) <= 128 and correlation_id.isprintable() and correlation_id.isascii()):
            correlation_id = uuid.uuid4().hex
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

    @router.get("/v1/webhooks/whatsapp", response_class=PlainTextResponse)
    async def verify_webhook(
        mode: Annotated[str | None, Query(alias="hub.mode")] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge")] = None,
    ) -> PlainTextResponse:
        """Meta's verification handshake: echo the challenge when the token matches."""
        if mode == "subscribe" and token is not None and challenge is not None and hmac.compare_digest(
                token.encode(), settings.whatsapp_verify_token.encode()):
            return PlainTextResponse(challenge)
        return PlainTextResponse("verification failed", status_code=403)

    @router.post("/v1/webhooks/whatsapp")
    async def receive_webhook(request: Request) -> JSONResponse:
        """Statuses and inbound messages from Meta, verified before anything is parsed."""
        try:
            raw = await _read_limited(request, settings.max_webhook_bytes)
        except _TooLarge:
            return _error(413, "body_too_large", "webhook body too large")
        if not signature_valid(settings.whatsapp_app_secret, raw, request.headers.get("x-hub-signature-256")):
            metrics.rejected.labels("401").inc()
            return _error(401, "bad_signature", "missing or invalid X-Hub-Signature-256")
        try:
            payload = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_json", "webhook body is not JSON")
        translated = translate(payload)
        skipped = translated.skipped
        by_tenant: dict[str, list[Any]] = {}
        for number_id, event in translated.events:
            tenant = await directory.tenant_of_number(number_id)
            if tenant is None:
                skipped += 1
                continue
            by_tenant.setdefault(tenant, []).append(event)
        try:
            for tenant, events in by_tenant.items():
                await publisher.publish(tenant, events, ingested_at=clock.now(),
                                        correlation_id=uuid.uuid4().hex)
        except KafkaError:
            # Meta retries non-2xx deliveries; consumers dedupe on the derived event ids.
            return _error(503, "broker_unavailable", "retry later")
        for events in by_tenant.values():
            for event in events:
                metrics.webhooks.labels(event.type).inc()
        if skipped:
            metrics.webhook_skipped.inc(skipped)
        return JSONResponse({"received": sum(len(e) for e in by_tenant.values())})

    @router.post("/internal/v1/keys/introspect", include_in_schema=False)
    async def introspect(body: IntrospectRequest) -> JSONResponse:
        """For sibling services: the tenant a key belongs to (ingest owns the keys)."""
        principal = await directory.principal_for(body.api_key)
        if principal is None:
            return JSONResponse({"error": {"code": "unknown_key"}}, status_code=404)
        return JSONResponse({"tenant": principal.tenant, "read_only": principal.read_only})

    return router


def install_error_handlers(app: FastAPI) -> None:
    """Errors in the documented shape: `{"error": {"code", "message"}}`."""

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(exc.status_code, "error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail)}},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [FieldError(None, ".".join(str(p) for p in e["loc"]), e["msg"]).as_dict() for e in exc.errors()]
        return JSONResponse({"error": {"code": "invalid_request", "message": "invalid request"},
                             "errors": errors}, status_code=422)
