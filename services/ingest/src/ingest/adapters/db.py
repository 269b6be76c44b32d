"""Tenants, API keys and WhatsApp number routing in PostgreSQL, with short-lived caches.

The repository functions (`create_tenant`, `issue_key`, `revoke_key`, …) take a connection, so a caller
composes them in one transaction; `TenantDirectory` runs them for the HTTP API and the bootstrap (one
transaction each) and keeps this process's caches true to what it changed.

The revocation bound: a revoked key, or a key of a disabled tenant, is refused everywhere at most
`SCRM_KEY_CACHE_SECONDS` (≤ 30 s) after the change is committed. Only one cache stands between the
database and any answer: key introspection and ingest's key-management routes read the database on every
call (`lookup(..., cached=False)`), so a sibling service's `KeyIntrospection` cache, `SCRM_KEY_CACHE_SECONDS`
long, is the only one on their way; `POST /v1/events` (the hot path) caches for the same
`SCRM_KEY_CACHE_SECONDS` on each ingest replica (the replica that made the change forgets at once).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ingest.domain.numbers import AccountChange, NumberState, apply_change
from ingest.domain.tenants import (
    LAST_USED_RESOLUTION,
    TenantStatus,
    is_key_id,
    key_id,
    key_prefix,
    last_use_due,
    shown_prefix,
    status_of,
)
from scrm_common.cache import MISSING, TtlCache
from scrm_common.http import Principal, Role, hash_api_key, new_api_key

log = logging.getLogger(__name__)

BOOTSTRAP_KEY_LABEL = "bootstrap (SCRM_BOOTSTRAP_API_KEY)"


class TenantExists(Exception):
    """A tenant with this id exists already."""


class UnknownTenant(Exception):
    """No tenant has this id."""


class TenantDisabled(Exception):
    """The tenant is disabled: it gets no new keys."""


@dataclass(frozen=True, slots=True)
class TenantRow:
    """A tenant as stored: id, display name, when it was created and disabled (None: active)."""

    tenant: str
    name: str | None
    created_at: datetime
    disabled_at: datetime | None

    @property
    def status(self) -> TenantStatus:
        return status_of(self.disabled_at)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A key as lists show it: never the key, only its public id and prefix (`scrm_…` for old keys)."""

    id: str
    tenant: str
    prefix: str
    role: Role
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just issued: the only time the key itself is known."""

    key: str
    row: KeyRow


@dataclass(frozen=True, slots=True)
class KeyLookup:
    """What a key resolves to: its principal, or None (unknown, revoked, or its tenant is disabled)."""

    principal: Principal | None
    tenant_disabled: bool = False


_NOBODY = KeyLookup(None)
_TENANT_COLUMNS = "tenant, name, created_at, disabled_at"
_KEY_COLUMNS = "id, tenant, prefix, role, label, created_at, last_used_at, revoked_at, bootstrap"


def _tenant(row: Any) -> TenantRow:
    return TenantRow(row.tenant, row.name, row.created_at, row.disabled_at)


def _key(row: Any) -> KeyRow:
    return KeyRow(row.id, row.tenant, shown_prefix(row.prefix), row.role, row.label, row.created_at,
                  row.last_used_at, row.revoked_at, row.bootstrap)


# ---------------------------------------------------------------------------------------------------------
# Repository functions: one statement or a few, on the caller's connection (and transaction).


async def create_tenant(conn: AsyncConnection, tenant: str, *, name: str | None = None,
                        if_missing: bool = False) -> TenantRow:
    """Create `tenant` (active); raises TenantExists, or with `if_missing` returns the existing one unchanged."""
    row = (await conn.execute(text(
        f"INSERT INTO tenants(tenant, name) VALUES (:t, :n) ON CONFLICT (tenant) DO NOTHING "
        f"RETURNING {_TENANT_COLUMNS}"),
        {"t": tenant, "n": name})).first()
    if row is not None:
        return _tenant(row)
    if not if_missing:
        raise TenantExists(tenant)
    existing = await get_tenant(conn, tenant)
    assert existing is not None  # it conflicted, and tenants are never deleted
    return existing


async def get_tenant(conn: AsyncConnection, tenant: str) -> TenantRow | None:
    """The tenant, or None."""
    row = (await conn.execute(text(f"SELECT {_TENANT_COLUMNS} FROM tenants WHERE tenant = :t"),
                              {"t": tenant})).first()
    return None if row is None else _tenant(row)


async def list_tenants(conn: AsyncConnection) -> list[TenantRow]:
    """Every tenant, by id."""
    rows = (await conn.execute(text(f"SELECT {_TENANT_COLUMNS} FROM tenants ORDER BY tenant"))).all()
    return [_tenant(r) for r in rows]


async def update_tenant(conn: AsyncConnection, tenant: str, *, name: str | None = None, set_name: bool = False,
                        status: TenantStatus | None = None) -> TenantRow | None:
    """Rename (`set_name`: to `name`, None clears it) and/or enable/disable `tenant`; None when unknown.

    Disabling keeps the first `disabled_at`; enabling clears it.
    """
    row = (await conn.execute(text(
        f"UPDATE tenants SET name = CASE WHEN :set_name THEN CAST(:n AS text) ELSE name END, "
        f"disabled_at = CASE WHEN CAST(:s AS text) = 'disabled' THEN COALESCE(disabled_at, now()) "
        f"WHEN CAST(:s AS text) = 'active' THEN NULL ELSE disabled_at END "
        f"WHERE tenant = :t RETURNING {_TENANT_COLUMNS}"),
        {"t": tenant, "n": name, "set_name": set_name, "s": status})).first()
    return None if row is None else _tenant(row)


async def issue_key(conn: AsyncConnection, tenant: str, role: Role, *, label: str | None = None,
                    key: str | None = None, bootstrap: bool = False, allow_disabled: bool = False) -> IssuedKey:
    """Issue a key of `role` for `tenant`: a fresh random one, or `key` (the bootstrap's).

    Stored as its SHA-256 with its prefix, a public id and the role. Naming a `key` that exists already
    returns that key's row unchanged (a revoked one stays revoked). Raises UnknownTenant, or TenantDisabled
    unless `allow_disabled`.
    """
    owner = await get_tenant(conn, tenant)
    if owner is None:
        raise UnknownTenant(tenant)
    if owner.disabled_at is not None and not allow_disabled:
        raise TenantDisabled(tenant)
    key = key or new_api_key()
    digest = hash_api_key(key)
    row = (await conn.execute(text(
        f"INSERT INTO api_keys(key_hash, id, tenant, prefix, role, label, bootstrap) "
        f"VALUES (:h, :id, :t, :p, :r, :l, :b) ON CONFLICT (key_hash) DO NOTHING RETURNING {_KEY_COLUMNS}"),
        {"h": digest, "id": key_id(secrets.token_hex(6)), "t": tenant, "p": key_prefix(key), "r": role,
         "l": label, "b": bootstrap})).first()
    if row is None:
        row = (await conn.execute(text(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = :h"),
                                  {"h": digest})).one()
    return IssuedKey(key, _key(row))


async def list_keys(conn: AsyncConnection, tenant: str) -> list[KeyRow]:
    """The tenant's keys, revoked ones included, oldest first."""
    rows = (await conn.execute(text(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant = :t ORDER BY created_at, id"), {"t": tenant})).all()
    return [_key(r) for r in rows]


async def revoke_key(conn: AsyncConnection, tenant: str, key_id_: str) -> str | None:
    """Revoke the tenant's key `key_id_` (again: no change); its SHA-256, or None when the tenant has no
    such key (another tenant's key is none of its business)."""
    if not is_key_id(key_id_):
        return None
    return (await conn.execute(text(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE tenant = :t AND id = :id "
        "RETURNING key_hash"), {"t": tenant, "id": key_id_})).scalar()


async def number_state(conn: AsyncConnection, phone_number_id: str, *, lock: bool = False) -> NumberState | None:
    """What is known of a phone number id (locked for update with `lock`), or None."""
    row = (await conn.execute(text(
        "SELECT tenant, waba_id, changed_at, removed_at IS NOT NULL AS removed FROM whatsapp_numbers "
        "WHERE phone_number_id = :p" + (" FOR UPDATE" if lock else "")), {"p": phone_number_id})).first()
    return None if row is None else NumberState(row.tenant, row.waba_id, row.changed_at, row.removed)


async def save_number(conn: AsyncConnection, phone_number_id: str, state: NumberState) -> None:
    """Store a number's state (a removed number keeps a tombstone row with `removed_at`)."""
    await conn.execute(text(
        "INSERT INTO whatsapp_numbers(phone_number_id, tenant, waba_id, changed_at, removed_at) "
        "VALUES (:p, :t, :w, :c, CASE WHEN :r THEN CAST(:c AS timestamptz) END) "
        "ON CONFLICT (phone_number_id) DO UPDATE SET tenant = EXCLUDED.tenant, waba_id = EXCLUDED.waba_id, "
        "changed_at = EXCLUDED.changed_at, removed_at = EXCLUDED.removed_at"),
        {"p": phone_number_id, "t": state.tenant, "w": state.waba_id, "c": state.changed_at, "r": state.removed})


# ---------------------------------------------------------------------------------------------------------


class TenantDirectory:
    """Who a key belongs to and which tenant owns a phone number id; and the tenant and key operations of
    the API and the bootstrap, each one transaction.

    `cache_seconds` (`SCRM_KEY_CACHE_SECONDS`) is how long a cached answer lives: a key resolved with
    `cached=True` (only `POST /v1/events`) and number routing. See the module's docstring for the bound.
    """

    def __init__(self, engine: AsyncEngine, *, cache_seconds: float) -> None:
        self._engine = engine
        self._keys: TtlCache[str, KeyLookup] = TtlCache(ttl=cache_seconds, maxsize=50_000)
        self._numbers: TtlCache[str, str | None] = TtlCache(ttl=cache_seconds, maxsize=10_000)
        self._accounts: TtlCache[str, str | None] = TtlCache(ttl=cache_seconds, maxsize=10_000)
        self._disabled: TtlCache[str, bool] = TtlCache(ttl=cache_seconds, maxsize=10_000)

    # ---- lookups ----

    async def lookup(self, api_key: str, *, cached: bool = False) -> KeyLookup:
        """What a key resolves to: from the database (a primary-key read), or with `cached` from this
        process's cache when it answered within `cache_seconds`. Every database read refreshes the cache
        and records a valid key's use (`last_used_at`, at most once a minute whatever the replicas do)."""
        digest = hash_api_key(api_key)
        if cached:
            hit = self._keys.get(digest, MISSING)
            if isinstance(hit, KeyLookup):
                return hit
        async with self._engine.begin() as conn:
            row = (await conn.execute(text(
                "SELECT k.key_hash, k.id, k.tenant, k.role, k.last_used_at, t.disabled_at, now() AS now "
                "FROM api_keys k JOIN tenants t USING (tenant) WHERE k.key_hash = :h AND k.revoked_at IS NULL"),
                {"h": digest})).first()
            value = _NOBODY
            if row is not None and hmac.compare_digest(row.key_hash, digest):
                if row.disabled_at is not None:
                    value = KeyLookup(None, tenant_disabled=True)
                else:
                    value = KeyLookup(Principal(tenant=row.tenant, role=row.role, key_id=row.id))
                    if last_use_due(row.last_used_at, row.now):
                        await conn.execute(text(
                            "UPDATE api_keys SET last_used_at = now() WHERE key_hash = :h "
                            "AND (last_used_at IS NULL OR last_used_at <= now() - CAST(:every AS interval))"),
                            {"h": digest, "every": LAST_USED_RESOLUTION})
        self._keys.put(digest, value)
        return value

    async def principal_for(self, api_key: str) -> Principal | None:
        """The tenant, role and key id of a key, read from the database (never cached: what key
        introspection answers); None when unknown, revoked, or its tenant is disabled."""
        return (await self.lookup(api_key)).principal

    async def tenant_of_number(self, phone_number_id: str) -> str | None:
        """The tenant owning a WhatsApp phone number id (None: nobody, or it was removed)."""
        hit = self._numbers.get(phone_number_id, MISSING)
        if hit is not MISSING:
            return hit  # type: ignore[return-value]
        async with self._engine.connect() as conn:
            tenant = (await conn.execute(text(
                "SELECT tenant FROM whatsapp_numbers WHERE phone_number_id = :p AND removed_at IS NULL"),
                {"p": phone_number_id})).scalar()
        self._numbers.put(phone_number_id, tenant)
        return tenant

    async def tenant_of_waba(self, waba_id: str) -> str | None:
        """The tenant owning the numbers of a WhatsApp Business Account; None if none or several do."""
        hit = self._accounts.get(waba_id, MISSING)
        if hit is not MISSING:
            return hit  # type: ignore[return-value]
        async with self._engine.connect() as conn:
            owners = (await conn.execute(text(
                "SELECT DISTINCT tenant FROM whatsapp_numbers WHERE waba_id = :w AND removed_at IS NULL LIMIT 2"),
                {"w": waba_id})).scalars().all()
        tenant = owners[0] if len(owners) == 1 else None
        self._accounts.put(waba_id, tenant)
        return tenant

    async def is_disabled(self, tenant: str) -> bool:
        """Whether `tenant` is disabled (an unknown tenant is not)."""
        hit = self._disabled.get(tenant, MISSING)
        if isinstance(hit, bool):
            return hit
        async with self._engine.connect() as conn:
            row = await get_tenant(conn, tenant)
        disabled = row is not None and row.disabled_at is not None
        self._disabled.put(tenant, disabled)
        return disabled

    # ---- tenants and keys (the API) ----

    async def create_tenant(self, tenant: str, *, name: str | None) -> TenantRow:
        """A new active tenant; raises TenantExists."""
        async with self._engine.begin() as conn:
            return await create_tenant(conn, tenant, name=name)

    async def tenants(self) -> list[TenantRow]:
        """Every tenant."""
        async with self._engine.connect() as conn:
            return await list_tenants(conn)

    async def tenant(self, tenant: str) -> TenantRow | None:
        """One tenant, or None."""
        async with self._engine.connect() as conn:
            return await get_tenant(conn, tenant)

    async def update_tenant(self, tenant: str, *, name: str | None = None, set_name: bool = False,
                            status: TenantStatus | None = None) -> TenantRow | None:
        """Rename and/or enable/disable a tenant (None: unknown). A status change takes effect in this
        process at once (its key and routing caches are dropped), elsewhere within the key cache's bound."""
        async with self._engine.begin() as conn:
            row = await update_tenant(conn, tenant, name=name, set_name=set_name, status=status)
        if row is not None and status is not None:
            self._keys.clear()
            self._disabled.pop(tenant)
        return row

    async def issue_key(self, tenant: str, role: Role, *, label: str | None) -> IssuedKey:
        """A fresh key of `role` for `tenant`; raises UnknownTenant or TenantDisabled."""
        async with self._engine.begin() as conn:
            return await issue_key(conn, tenant, role, label=label)

    async def keys(self, tenant: str) -> list[KeyRow]:
        """The tenant's keys (never the keys themselves)."""
        async with self._engine.connect() as conn:
            return await list_keys(conn, tenant)

    async def revoke_key(self, tenant: str, key_id_: str) -> bool:
        """Revoke the tenant's key `key_id_`; False when it has none such. This process refuses the key at
        once; other ingest replicas and services within `SCRM_KEY_CACHE_SECONDS`."""
        async with self._engine.begin() as conn:
            digest = await revoke_key(conn, tenant, key_id_)
        if digest is None:
            return False
        self._keys.pop(digest)
        return True

    # ---- routing learnt from the sender's account events ----

    async def apply_account_changes(self, changes: Sequence[AccountChange]) -> list[tuple[AccountChange, bool]]:
        """Apply account events in order, in one transaction (load → decide → persist per number); each
        change with whether it altered anything. The routing caches of the numbers (and WABAs) it touched
        are dropped in this process; other ingest replicas see the change within their cache's lifetime."""
        applied: list[tuple[AccountChange, bool]] = []
        touched_wabas: set[str] = set()
        async with self._engine.begin() as conn:
            for change in changes:
                current = await number_state(conn, change.phone_number_id, lock=True)
                new = apply_change(current, change)
                if new is not None:
                    await save_number(conn, change.phone_number_id, new)
                    touched_wabas.update(w for w in (current and current.waba_id, new.waba_id) if w)
                applied.append((change, new is not None))
        for change, changed in applied:
            if changed:
                self._numbers.pop(change.phone_number_id)
        for waba in touched_wabas:
            self._accounts.pop(waba)
        return applied

    # ---- the bootstrap ----

    async def bootstrap(self, *, tenant: str, api_key: str | None, phone_number_id: str | None,
                        waba_id: str | None = None) -> None:
        """Create the bootstrap tenant, its admin key and (only if no tenant has it yet) its first number;
        idempotent. The same operations the API uses (`create_tenant`, `issue_key`), in one transaction.

        The bootstrap key is the one `SCRM_BOOTSTRAP_API_KEY` names now: every earlier bootstrap key (another
        value, or another bootstrap tenant's) is revoked, so changing the variable retires the old key, and
        unsetting it (None or empty: no bootstrap key wanted) retires them all (logged at WARNING). The
        other ingest replicas stop accepting a retired key within `SCRM_KEY_CACHE_SECONDS`. A revoked key named
        again stays revoked (logged as an error). A value naming another tenant's existing key is refused
        (logged as an error): that key is not made a bootstrap key, and nothing else changes. The number is
        seeded only when unknown: the sender's account events decide who owns a number, a start never moves
        one to another tenant.
        """
        async with self._engine.begin() as conn:
            await create_tenant(conn, tenant, if_missing=True)
            if api_key:
                await self._bootstrap_key(conn, tenant, api_key)
            else:
                retired = (await conn.execute(text(
                    "UPDATE api_keys SET revoked_at = now() WHERE bootstrap AND revoked_at IS NULL "
                    "RETURNING id, tenant"))).all()
                for row in retired:
                    log.warning("SCRM_BOOTSTRAP_API_KEY is not set: the previous bootstrap key %s of tenant %s "
                                "is revoked", row.id, row.tenant)
            if phone_number_id:
                await conn.execute(text(
                    "INSERT INTO whatsapp_numbers(phone_number_id, tenant, waba_id) VALUES (:p, :t, :w) "
                    "ON CONFLICT (phone_number_id) DO NOTHING"),
                    {"p": phone_number_id, "t": tenant, "w": waba_id or None})

    @staticmethod
    async def _bootstrap_key(conn: AsyncConnection, tenant: str, api_key: str) -> None:
        """Make `api_key` the bootstrap tenant's bootstrap key (see `bootstrap`), retiring the earlier ones."""
        digest = hash_api_key(api_key)
        owner = (await conn.execute(text("SELECT tenant FROM api_keys WHERE key_hash = :h"), {"h": digest})).scalar()
        if owner is not None and owner != tenant:
            log.error("SCRM_BOOTSTRAP_API_KEY names a key of tenant %s, not of SCRM_BOOTSTRAP_TENANT %s: refused, "
                      "it stays an ordinary key of %s and the bootstrap keys are left as they were; set a new "
                      "value", owner, tenant, owner)
            return
        issued = await issue_key(conn, tenant, "admin", label=BOOTSTRAP_KEY_LABEL, key=api_key, bootstrap=True,
                                 allow_disabled=True)
        if not issued.row.bootstrap:
            await conn.execute(text("UPDATE api_keys SET bootstrap = true WHERE key_hash = :h"), {"h": digest})
        await conn.execute(text(
            "UPDATE api_keys SET revoked_at = now() WHERE bootstrap AND key_hash <> :h AND revoked_at IS NULL"),
            {"h": digest})
        if issued.row.revoked_at is not None:  # a revoked key is never brought back by naming it again
            log.error("SCRM_BOOTSTRAP_API_KEY names a key that was revoked; it stays revoked: "
                      "set a new value to get a working bootstrap key")

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False
