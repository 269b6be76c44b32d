"""HTTP pieces every service serves: health, readiness, metrics, and tenant-key authentication."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from fastapi import APIRouter, HTTPException, Request, Response
from prometheus_client import CollectorRegistry

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
