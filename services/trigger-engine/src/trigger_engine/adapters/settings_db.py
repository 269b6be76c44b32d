"""The settings tables (migration 005; 007 orders the accounts projection): flow and tenant settings with
their history, the tenant's accounts projection and the per-tenant configuration version every batch checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class StoredSettings:
    """One stored settings row: what the tenant changed from the defaults, at `version`."""

    version: int
    changes: dict[str, Any]
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class Change:
    """One history row: version `version` made by key `changed_by` at `changed_at`, effective `old` → `new`."""

    version: int
    changed_at: datetime
    changed_by: str
    old: dict[str, Any]
    new: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AccountEvent:
    """An `account.registered` (removed False) or `account.removed` of a tenant's WhatsApp account.

    `occurred_at` is the event's own time, which orders the events of one account (None: `at`)."""

    tenant: str
    account_id: str
    removed: bool
    at: datetime  # when it was registered (its `registered_at`, else the event's time) or removed
    waba_id: str | None = None
    display_name: str | None = None
    occurred_at: datetime | None = None

    @property
    def changed_at(self) -> datetime:
        """When this change happened: what orders it against the account's other changes."""
        return self.occurred_at or self.at


@dataclass(frozen=True, slots=True)
class TenantAccounts:
    """The accounts a tenant owns, earliest registered first; `ever` False when it never had one."""

    present: tuple[str, ...]
    ever: bool


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return dict(value or {})


class SettingsRepository:
    """One method per round trip, each on the caller's connection (its transaction)."""

    async def raise_version(self, conn: AsyncConnection, tenants: Iterable[str]) -> None:
        """Raise each tenant's configuration version, holding its row lock until the transaction ends: one
        tenant's changes are serialised (a PATCH reads what the previous one wrote — no lost update). Locks
        are taken in one order (no deadlock between two batches)."""
        for tenant in sorted(set(tenants)):
            await conn.execute(text(
                "INSERT INTO config_versions(tenant, version) VALUES (:t, 1) "
                "ON CONFLICT (tenant) DO UPDATE SET version = config_versions.version + 1"), {"t": tenant})

    async def versions(self, conn: AsyncConnection, tenants: Iterable[str]) -> dict[str, int]:
        """The configuration version of each of `tenants` (0 for one that never changed anything)."""
        wanted = sorted(set(tenants))
        rows = await conn.execute(text(
            "SELECT tenant, version FROM config_versions WHERE tenant = ANY(CAST(:t AS text[]))"), {"t": wanted})
        found = {r.tenant: r.version for r in rows}
        return {t: found.get(t, 0) for t in wanted}

    async def flows(self, conn: AsyncConnection, tenants: Sequence[str],
                    flow: str | None = None) -> dict[tuple[str, str], StoredSettings]:
        """(tenant, flow) → stored settings of `tenants` (of one `flow` when given)."""
        rows = await conn.execute(text(
            "SELECT tenant, flow, version, settings, updated_at, updated_by FROM flow_settings "
            "WHERE tenant = ANY(CAST(:t AS text[])) AND (CAST(:f AS text) IS NULL OR flow = :f)"),
            {"t": list(tenants), "f": flow})
        return {(r.tenant, r.flow): StoredSettings(r.version, _json(r.settings), r.updated_at, r.updated_by)
                for r in rows}

    async def save_flow(self, conn: AsyncConnection, tenant: str, flow: str, stored: StoredSettings,
                        old: dict[str, Any], new: dict[str, Any]) -> None:
        """Write a flow's settings at `stored.version` and its history row."""
        params = {"t": tenant, "f": flow, "v": stored.version, "s": json.dumps(stored.changes),
                  "at": stored.updated_at, "by": stored.updated_by, "old": json.dumps(old), "new": json.dumps(new)}
        await conn.execute(text(
            "INSERT INTO flow_settings(tenant, flow, version, settings, updated_at, updated_by) "
            "VALUES (:t, :f, :v, CAST(:s AS jsonb), :at, :by) ON CONFLICT (tenant, flow) DO UPDATE SET "
            "version = EXCLUDED.version, settings = EXCLUDED.settings, updated_at = EXCLUDED.updated_at, "
            "updated_by = EXCLUDED.updated_by"), params)
        await conn.execute(text(
            "INSERT INTO flow_settings_history(tenant, flow, version, changed_at, changed_by, old, new) "
            "VALUES (:t, :f, :v, :at, :by, CAST(:old AS jsonb), CAST(:new AS jsonb))"), params)

    async def flow_history(self, conn: AsyncConnection, tenant: str, flow: str, limit: int) -> list[Change]:
        """A flow's changes, newest first."""
        rows = await conn.execute(text(
            "SELECT version, changed_at, changed_by, old, new FROM flow_settings_history "
            "WHERE tenant = :t AND flow = :f ORDER BY version DESC LIMIT :n"), {"t": tenant, "f": flow, "n": limit})
        return [Change(r.version, r.changed_at, r.changed_by, _json(r.old), _json(r.new)) for r in rows]

    async def tenant_settings(self, conn: AsyncConnection, tenants: Sequence[str]) -> dict[str, StoredSettings]:
        """tenant → its stored tenant settings."""
        rows = await conn.execute(text(
            "SELECT tenant, version, settings, updated_at, updated_by FROM tenant_settings "
            "WHERE tenant = ANY(CAST(:t AS text[]))"), {"t": list(tenants)})
        return {r.tenant: StoredSettings(r.version, _json(r.settings), r.updated_at, r.updated_by) for r in rows}

    async def save_tenant_settings(self, conn: AsyncConnection, tenant: str, stored: StoredSettings,
                                   old: dict[str, Any], new: dict[str, Any]) -> None:
        """Write a tenant's settings at `stored.version` and its history row."""
        params = {"t": tenant, "v": stored.version, "s": json.dumps(stored.changes), "at": stored.updated_at,
                  "by": stored.updated_by, "old": json.dumps(old), "new": json.dumps(new)}
        await conn.execute(text(
            "INSERT INTO tenant_settings(tenant, version, settings, updated_at, updated_by) "
            "VALUES (:t, :v, CAST(:s AS jsonb), :at, :by) ON CONFLICT (tenant) DO UPDATE SET "
            "version = EXCLUDED.version, settings = EXCLUDED.settings, updated_at = EXCLUDED.updated_at, "
            "updated_by = EXCLUDED.updated_by"), params)
        await conn.execute(text(
            "INSERT INTO tenant_settings_history(tenant, version, changed_at, changed_by, old, new) "
            "VALUES (:t, :v, :at, :by, CAST(:old AS jsonb), CAST(:new AS jsonb))"), params)

    async def tenant_history(self, conn: AsyncConnection, tenant: str, limit: int) -> list[Change]:
        """A tenant's settings changes, newest first."""
        rows = await conn.execute(text(
            "SELECT version, changed_at, changed_by, old, new FROM tenant_settings_history "
            "WHERE tenant = :t ORDER BY version DESC LIMIT :n"), {"t": tenant, "n": limit})
        return [Change(r.version, r.changed_at, r.changed_by, _json(r.old), _json(r.new)) for r in rows]

    async def accounts(self, conn: AsyncConnection, tenants: Sequence[str]) -> dict[str, TenantAccounts]:
        """tenant → the accounts it owns (earliest registered first) and whether it ever had one."""
        rows = await conn.execute(text(
            "SELECT tenant, account_id, removed_at FROM tenant_accounts WHERE tenant = ANY(CAST(:t AS text[])) "
            "ORDER BY tenant, registered_at, account_id"), {"t": list(tenants)})
        present: dict[str, list[str]] = {t: [] for t in tenants}
        ever: set[str] = set()
        for r in rows:
            ever.add(r.tenant)
            if r.removed_at is None:
                present[r.tenant].append(r.account_id)
        return {t: TenantAccounts(tuple(present[t]), t in ever) for t in tenants}

    async def apply_account_events(self, conn: AsyncConnection, events: Sequence[AccountEvent],
                                   now: datetime) -> None:
        """Apply account events: registered (again: its WABA and name updated; after a removal present again)
        or removed (the row stays, marked: a tombstone). An event older (`changed_at`) than the last one
        applied to the (tenant, account) changes nothing, so events relayed out of order end as they happened:
        a late registration older than a removal never brings the account back (as ingest's numbers do)."""
        for event in events:
            params = {"t": event.tenant, "a": event.account_id, "w": event.waba_id, "d": event.display_name,
                      "at": event.at, "now": now, "changed": event.changed_at}
            newer = "(tenant_accounts.changed_at IS NULL OR tenant_accounts.changed_at <= EXCLUDED.changed_at)"
            if event.removed:
                await conn.execute(text(
                    "INSERT INTO tenant_accounts(tenant, account_id, registered_at, removed_at, updated_at, "
                    "changed_at) VALUES (:t, :a, :at, :at, :now, :changed) ON CONFLICT (tenant, account_id) DO "
                    "UPDATE SET removed_at = EXCLUDED.removed_at, updated_at = EXCLUDED.updated_at, "
                    f"changed_at = EXCLUDED.changed_at WHERE tenant_accounts.removed_at IS NULL AND {newer}"), params)
            else:
                await conn.execute(text(
                    "INSERT INTO tenant_accounts(tenant, account_id, waba_id, display_name, registered_at, "
                    "removed_at, updated_at, changed_at) VALUES (:t, :a, :w, :d, :at, NULL, :now, :changed) "
                    "ON CONFLICT (tenant, account_id) DO UPDATE SET waba_id = EXCLUDED.waba_id, "
                    "display_name = EXCLUDED.display_name, registered_at = EXCLUDED.registered_at, "
                    "removed_at = NULL, updated_at = EXCLUDED.updated_at, changed_at = EXCLUDED.changed_at "
                    f"WHERE {newer}"), params)
