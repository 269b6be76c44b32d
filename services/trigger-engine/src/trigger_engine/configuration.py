"""Flow and tenant settings as data: changed through the API (`SettingsService`), read by every batch
(`TenantConfigs`).

**Effective at once, on every replica, without a restart**: every change raises the tenant's configuration
version (`config_versions`) in the transaction that writes it. Every consumed batch reads the versions of
its tenants in one query, inside its own transaction, and rebuilds a tenant's cached `EngineConfig` only
when its version moved (a read-through cache with a version check). So the first batch that starts after
a change commits decides with it — on this replica and every other one — and an unchanged configuration
costs one small query per batch. The accounts projection (`account.registered` / `account.removed` from the
sender) raises the version the same way — inside the consuming batch's transaction, so a batch never caches the
configuration it built at a version it raised itself and has not committed (`TenantConfigs.configs(raised=…)`).

The installation's environment (`SCRM_SHOP_TRACKING_URL`, …) gives the defaults of every tenant's settings;
a tenant's stored settings are what it changed from them, so it follows the installation's defaults in
everything it did not change. The bootstrap tenant sends from `SCRM_BOOTSTRAP_PHONE_NUMBER_ID` until the
engine has seen its first `account.registered`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.clock import Clock
from trigger_engine.adapters.settings_db import Change, SettingsRepository, StoredSettings, TenantAccounts
from trigger_engine.domain.flows import FLOWS, engine_config
from trigger_engine.domain.model import EngineConfig, LinkKeys
from trigger_engine.domain.settings import (
    FlowSettings,
    SettingsModel,
    TenantSettings,
    changed_from,
    field_faults,
    merge_patch,
    with_changes,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """The bootstrap tenant's account until its first `account.registered` is seen (CONTRACT §1)."""

    tenant: str
    account_id: str | None

    def accounts(self, tenant: str, known: TenantAccounts) -> tuple[str, ...]:
        """The accounts `tenant` owns: the projection's; the bootstrap account for a bootstrap tenant that
        never had one."""
        if not known.ever and tenant == self.tenant and self.account_id:
            return (self.account_id,)
        return known.present


class _Unchanged(Exception):
    """A change that changes nothing: its transaction is rolled back, `view` is the settings as they are."""

    def __init__(self, view: SettingsView) -> None:
        super().__init__("unchanged")
        self.view = view


class UnknownFlow(LookupError):
    """No flow of that name (404)."""


class SettingsRefused(ValueError):
    """Settings that do not validate: `faults` is one (field, reason) per field at fault (422)."""

    def __init__(self, faults: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {r}" for f, r in faults))
        self.faults = faults


@dataclass(frozen=True, slots=True)
class SettingsView:
    """Effective settings (every field) at `version`: 0, `updated_at`/`updated_by` None while never changed."""

    version: int
    settings: dict[str, Any]
    updated_at: datetime | None
    updated_by: str | None


def _effective(kind: type[SettingsModel], defaults: SettingsModel, stored: StoredSettings | None,
               what: str) -> SettingsModel:
    if stored is None:
        return defaults
    settings, dropped = with_changes(kind, defaults, stored.changes)
    if dropped:
        log.warning("stored %s no longer valid, defaults used for: %s", what, ", ".join(dropped))
    return settings


class TenantConfigs:
    """The `EngineConfig` of each tenant a batch names, rebuilt only when the tenant's version moved.

    Holds at most `max_tenants` configurations (least recently used dropped). `links`: the installation's
    short-link keys every configuration carries.
    """

    def __init__(self, *, repository: SettingsRepository, defaults: TenantSettings, bootstrap: Bootstrap,
                 max_tenants: int = 10_000, links: LinkKeys | None = None) -> None:
        self._links = links or LinkKeys()
        self._repo = repository
        self._defaults = defaults
        self._bootstrap = bootstrap
        self._max = max_tenants
        self._cache: OrderedDict[str, tuple[int, EngineConfig]] = OrderedDict()

    async def configs(self, conn: AsyncConnection, tenants: Iterable[str], *,
                      raised: Collection[str] = frozenset()) -> dict[str, EngineConfig]:
        """tenant → its configuration as of now: one query when nothing changed, four when something did.

        `raised`: tenants whose version the caller's transaction raised and has not committed (a batch that
        applied account events). Their configuration is built from what the transaction sees and never cached:
        the transaction may still roll back, and another change would then commit that same version number
        with other settings — a cached entry would serve the rolled-back configuration under it. Only versions
        other transactions committed are cached.
        """
        versions = await self._repo.versions(conn, tenants)
        stale = [t for t, v in versions.items() if t in raised or (hit := self._cache.get(t)) is None or hit[0] != v]
        fresh = await self.load(conn, stale) if stale else {}
        out: dict[str, EngineConfig] = {}
        for tenant, version in versions.items():
            if tenant in fresh:
                out[tenant] = fresh[tenant]
                if tenant in raised:
                    continue
                self._cache[tenant] = (version, fresh[tenant])
            else:
                out[tenant] = self._cache[tenant][1]
            self._cache.move_to_end(tenant)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return out

    async def load(self, conn: AsyncConnection, tenants: list[str]) -> dict[str, EngineConfig]:
        """The configurations of `tenants`, read from the tables."""
        settings = await self._repo.tenant_settings(conn, tenants)
        flows = await self._repo.flows(conn, tenants)
        accounts = await self._repo.accounts(conn, tenants)
        out = {}
        for tenant in tenants:
            shop = _effective(TenantSettings, self._defaults, settings.get(tenant), f"settings of {tenant}")
            assert isinstance(shop, TenantSettings)
            mine: dict[str, FlowSettings] = {}
            for name, kind in FLOWS.items():
                flow = _effective(kind, kind(), flows.get((tenant, name)), f"{name} settings of {tenant}")
                assert isinstance(flow, FlowSettings)
                mine[name] = flow
            out[tenant] = engine_config(tenant, shop, mine, self._bootstrap.accounts(tenant, accounts[tenant]),
                                        self._links)
        return out


class SettingsService:
    """The settings API's operations, each in one transaction: read, replace (PUT), merge (PATCH), history.

    A change validates the whole new settings (one fault per field, nothing written on any), checks that
    an account it names is the tenant's, and writes the next version with its history row (who, when,
    old → new) while holding the tenant's configuration lock. A change that changes nothing writes nothing.
    """

    def __init__(self, *, engine: AsyncEngine, repository: SettingsRepository, defaults: TenantSettings,
                 bootstrap: Bootstrap, clock: Clock) -> None:
        self._engine = engine
        self._repo = repository
        self._defaults = defaults
        self._bootstrap = bootstrap
        self._clock = clock

    @staticmethod
    def kind(flow: str) -> type[FlowSettings]:
        """The settings model of `flow`; UnknownFlow when there is none."""
        kind = FLOWS.get(flow)
        if kind is None:
            raise UnknownFlow(f"no flow {flow!r}; flows: {', '.join(FLOWS)}")
        return kind

    async def flows(self, tenant: str) -> dict[str, SettingsView]:
        """Every flow's effective settings for `tenant`, in registry order."""
        async with self._engine.connect() as conn:
            stored = await self._repo.flows(conn, [tenant])
        return {name: self._view(kind, kind(), stored.get((tenant, name)), f"{name} settings of {tenant}")
                for name, kind in FLOWS.items()}

    async def flow(self, tenant: str, flow: str) -> SettingsView:
        """One flow's effective settings for `tenant`."""
        kind = self.kind(flow)
        async with self._engine.connect() as conn:
            stored = await self._repo.flows(conn, [tenant], flow)
        return self._view(kind, kind(), stored.get((tenant, flow)), f"{flow} settings of {tenant}")

    async def change_flow(self, tenant: str, flow: str, body: Any, *, by: str, replace: bool) -> SettingsView:
        """PUT (`replace`: `body` is the whole settings, absent fields their defaults) or PATCH (`body` a JSON
        merge patch of the effective settings) of one flow. Raises UnknownFlow, SettingsRefused."""
        kind = self.kind(flow)
        defaults = kind()
        try:
            return await self._change_flow(tenant, flow, kind, defaults, body, by=by, replace=replace)
        except _Unchanged as same:  # nothing changed: no version, no history (rolled back)
            return same.view

    async def _change_flow(self, tenant: str, flow: str, kind: type[FlowSettings], defaults: FlowSettings, body: Any,
                           *, by: str, replace: bool) -> SettingsView:
        async with self._engine.begin() as conn:
            await self._repo.raise_version(conn, [tenant])
            stored = (await self._repo.flows(conn, [tenant], flow)).get((tenant, flow))
            current = _effective(kind, defaults, stored, f"{flow} settings of {tenant}")
            new = self._validated(kind, body if replace else merge_patch(current.model_dump(mode="json"), body))
            assert isinstance(new, FlowSettings) and isinstance(current, FlowSettings)
            if new == current:
                raise _Unchanged(self._view(kind, defaults, stored, flow))
            if new.account_id is not None and new.account_id != current.account_id:
                await self._owned(conn, tenant, new.account_id, "body.account_id")
            written = StoredSettings((stored.version if stored else 0) + 1, changed_from(new, defaults),
                                     self._clock.now(), by)
            await self._repo.save_flow(conn, tenant, flow, written, current.model_dump(mode="json"),
                                       new.model_dump(mode="json"))
        return SettingsView(written.version, new.model_dump(mode="json"), written.updated_at, by)

    async def flow_history(self, tenant: str, flow: str, limit: int) -> list[Change]:
        """One flow's changes for `tenant`, newest first."""
        self.kind(flow)
        async with self._engine.connect() as conn:
            return await self._repo.flow_history(conn, tenant, flow, limit)

    async def tenant_settings(self, tenant: str) -> SettingsView:
        """The tenant's effective settings."""
        async with self._engine.connect() as conn:
            stored = (await self._repo.tenant_settings(conn, [tenant])).get(tenant)
        return self._view(TenantSettings, self._defaults, stored, f"settings of {tenant}")

    async def change_tenant_settings(self, tenant: str, body: Any, *, by: str) -> SettingsView:
        """PATCH the tenant's settings (`body` a JSON merge patch of the effective settings)."""
        try:
            return await self._change_tenant_settings(tenant, body, by=by)
        except _Unchanged as same:
            return same.view

    async def _change_tenant_settings(self, tenant: str, body: Any, *, by: str) -> SettingsView:
        async with self._engine.begin() as conn:
            await self._repo.raise_version(conn, [tenant])
            stored = (await self._repo.tenant_settings(conn, [tenant])).get(tenant)
            current = _effective(TenantSettings, self._defaults, stored, f"settings of {tenant}")
            new = self._validated(TenantSettings, merge_patch(current.model_dump(mode="json"), body))
            assert isinstance(new, TenantSettings) and isinstance(current, TenantSettings)
            if new == current:
                raise _Unchanged(self._view(TenantSettings, self._defaults, stored, tenant))
            if new.default_account_id is not None and new.default_account_id != current.default_account_id:
                await self._owned(conn, tenant, new.default_account_id, "body.default_account_id")
            written = StoredSettings((stored.version if stored else 0) + 1, changed_from(new, self._defaults),
                                     self._clock.now(), by)
            await self._repo.save_tenant_settings(conn, tenant, written, current.model_dump(mode="json"),
                                                  new.model_dump(mode="json"))
        return SettingsView(written.version, new.model_dump(mode="json"), written.updated_at, by)

    async def tenant_history(self, tenant: str, limit: int) -> list[Change]:
        """The tenant's settings changes, newest first."""
        async with self._engine.connect() as conn:
            return await self._repo.tenant_history(conn, tenant, limit)

    @staticmethod
    def _validated(kind: type[SettingsModel], body: Any) -> SettingsModel:
        if not isinstance(body, Mapping):
            raise SettingsRefused([("body", "must be a JSON object of settings")])
        try:
            return kind.model_validate(body)
        except ValidationError as exc:
            raise SettingsRefused(field_faults(exc)) from None

    async def _owned(self, conn: AsyncConnection, tenant: str, account_id: str, field: str) -> None:
        known = (await self._repo.accounts(conn, [tenant]))[tenant]
        owned = self._bootstrap.accounts(tenant, known)
        if account_id not in owned:
            mine = ", ".join(owned) or "none yet"
            raise SettingsRefused([(field, f"the tenant has no WhatsApp account {account_id} (its accounts: {mine})")])

    @staticmethod
    def _view(kind: type[SettingsModel], defaults: SettingsModel, stored: StoredSettings | None,
              what: str) -> SettingsView:
        settings = _effective(kind, defaults, stored, what)
        if stored is None:
            return SettingsView(0, settings.model_dump(mode="json"), None, None)
        return SettingsView(stored.version, settings.model_dump(mode="json"), stored.updated_at, stored.updated_by)
