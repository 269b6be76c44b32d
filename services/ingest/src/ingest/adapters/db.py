"""Tenants, API keys and WhatsApp number routing in PostgreSQL, with short-lived caches."""

from __future__ import annotations

import hmac
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from scrm_common.cache import MISSING, TtlCache
from scrm_common.http import Principal, hash_api_key

log = logging.getLogger(__name__)


class TenantDirectory:
    """Who a key belongs to and which tenant owns a phone number id."""

    def __init__(self, engine: AsyncEngine, *, cache_seconds: float) -> None:
        self._engine = engine
        self._keys: TtlCache[str, Principal | None] = TtlCache(ttl=cache_seconds, maxsize=50_000)
        self._numbers: TtlCache[str, str | None] = TtlCache(ttl=cache_seconds, maxsize=10_000)
        self._accounts: TtlCache[str, str | None] = TtlCache(ttl=cache_seconds, maxsize=10_000)

    async def principal_for(self, api_key: str) -> Principal | None:
        """The tenant of a key, or None when unknown or revoked."""
        digest = hash_api_key(api_key)
        hit = self._keys.get(digest, MISSING)
        if hit is not MISSING:
            return hit  # type: ignore[return-value]
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(
                "SELECT key_hash, tenant, read_only FROM api_keys "
                "WHERE key_hash = :h AND revoked_at IS NULL"), {"h": digest})).first()
        value = None
        if row is not None and hmac.compare_digest(row.key_hash, digest):
            value = Principal(tenant=row.tenant, role="read" if row.read_only else "admin", key_id=digest[:16])
        self._keys.put(digest, value)
        return value

    async def tenant_of_number(self, phone_number_id: str) -> str | None:
        """The tenant owning a WhatsApp phone number id."""
        hit = self._numbers.get(phone_number_id, MISSING)
        if hit is not MISSING:
            return hit  # type: ignore[return-value]
        async with self._engine.connect() as conn:
            tenant = (await conn.execute(text(
                "SELECT tenant FROM whatsapp_numbers WHERE phone_number_id = :p"), {"p": phone_number_id})).scalar()
        self._numbers.put(phone_number_id, tenant)
        return tenant

    async def tenant_of_waba(self, waba_id: str) -> str | None:
        """The tenant owning the numbers of a WhatsApp Business Account; None if none or several do."""
        hit = self._accounts.get(waba_id, MISSING)
        if hit is not MISSING:
            return hit  # type: ignore[return-value]
        async with self._engine.connect() as conn:
            owners = (await conn.execute(text(
                "SELECT DISTINCT tenant FROM whatsapp_numbers WHERE waba_id = :w LIMIT 2"),
                {"w": waba_id})).scalars().all()
        tenant = owners[0] if len(owners) == 1 else None
        self._accounts.put(waba_id, tenant)
        return tenant

    async def bootstrap(self, *, tenant: str, api_key: str | None, phone_number_id: str | None,
                        waba_id: str | None = None) -> None:
        """Create the bootstrap tenant, its key and its first number (with its WABA id); idempotent.

        The bootstrap key is the one `SCRM_BOOTSTRAP_API_KEY` names now: every earlier bootstrap key (another
        value, or another bootstrap tenant's) is revoked, so changing the variable retires the old key. The
        other ingest replicas stop accepting it within their key cache's lifetime (`key_cache_seconds`).
        A revoked key named again stays revoked (logged as an error).
        """
        async with self._engine.begin() as conn:
            await conn.execute(text("INSERT INTO tenants(tenant) VALUES (:t) ON CONFLICT DO NOTHING"),
                               {"t": tenant})
            if api_key:
                digest = hash_api_key(api_key)
                await conn.execute(text(
                    "INSERT INTO api_keys(key_hash, tenant, bootstrap) VALUES (:h, :t, true) "
                    "ON CONFLICT (key_hash) DO UPDATE SET bootstrap = true"),
                    {"h": digest, "t": tenant})
                await conn.execute(text(
                    "UPDATE api_keys SET revoked_at = now() "
                    "WHERE bootstrap AND key_hash <> :h AND revoked_at IS NULL"), {"h": digest})
                revoked = (await conn.execute(text(
                    "SELECT revoked_at IS NOT NULL FROM api_keys WHERE key_hash = :h"), {"h": digest})).scalar()
                if revoked:  # a revoked key is never brought back by naming it again
                    log.error("SCRM_BOOTSTRAP_API_KEY names a key that was revoked; it stays revoked: "
                              "set a new value to get a working bootstrap key")
            if phone_number_id:
                await conn.execute(text(
                    "INSERT INTO whatsapp_numbers(phone_number_id, tenant, waba_id) VALUES (:p, :t, :w) "
                    "ON CONFLICT (phone_number_id) DO UPDATE SET tenant = EXCLUDED.tenant, "
                    "waba_id = COALESCE(EXCLUDED.waba_id, whatsapp_numbers.waba_id)"),
                    {"p": phone_number_id, "t": tenant, "w": waba_id or None})

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False
