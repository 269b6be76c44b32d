"""Tenants, API keys and WhatsApp number routing in PostgreSQL, with short-lived caches."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.http import Principal, hash_api_key


@dataclass
class _Cached:
    expires: float
    value: object


class TenantDirectory:
    """Who a key belongs to and which tenant owns a phone number id."""

    def __init__(self, engine: AsyncEngine, *, cache_seconds: float) -> None:
        self._engine = engine
        self._ttl = cache_seconds
        self._keys: dict[str, _Cached] = {}
        self._numbers: dict[str, _Cached] = {}

    async def principal_for(self, api_key: str) -> Principal | None:
        """The tenant of a key, or None when unknown or revoked."""
        digest = hash_api_key(api_key)
        now = time.monotonic()
        hit = self._keys.get(digest)
        if hit is None or hit.expires < now:
            async with self._engine.connect() as conn:
                row = (await conn.execute(text(
                    "SELECT key_hash, tenant, read_only FROM api_keys "
                    "WHERE key_hash = :h AND revoked_at IS NULL"), {"h": digest})).first()
            value = None
            if row is not None and hmac.compare_digest(row.key_hash, digest):
                value = Principal(tenant=row.tenant, read_only=row.read_only)
            hit = _Cached(now + self._ttl, value)
            self._keys[digest] = hit
        return hit.value  # type: ignore[return-value]

    async def tenant_of_number(self, phone_number_id: str) -> str | None:
        """The tenant owning a WhatsApp phone number id."""
        now = time.monotonic()
        hit = self._numbers.get(phone_number_id)
        if hit is None or hit.expires < now:
            async with self._engine.connect() as conn:
                tenant = (await conn.execute(text(
                    "SELECT tenant FROM whatsapp_numbers WHERE phone_number_id = :p"),
                    {"p": phone_number_id})).scalar()
            hit = _Cached(now + self._ttl, tenant)
            self._numbers[phone_number_id] = hit
        return hit.value  # type: ignore[return-value]

    async def bootstrap(self, *, tenant: str, api_key: str | None, phone_number_id: str | None) -> None:
        """Create the bootstrap tenant, its key and its first number; idempotent."""
        async with self._engine.begin() as conn:
            await conn.execute(text("INSERT INTO tenants(tenant) VALUES (:t) ON CONFLICT DO NOTHING"),
                               {"t": tenant})
            if api_key:
                await conn.execute(text(
                    "INSERT INTO api_keys(key_hash, tenant) VALUES (:h, :t) ON CONFLICT DO NOTHING"),
                    {"h": hash_api_key(api_key), "t": tenant})
            if phone_number_id:
                await conn.execute(text(
                    "INSERT INTO whatsapp_numbers(phone_number_id, tenant) VALUES (:p, :t) "
                    "ON CONFLICT (phone_number_id) DO UPDATE SET tenant = EXCLUDED.tenant"),
                    {"p": phone_number_id, "t": tenant})

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False
