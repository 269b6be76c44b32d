"""The sender's templates, asked over HTTP, and the check that a settings change names only templates the sender
has (`TemplateGuard`; the comparison itself is the pure `domain.template_check`).

The sender owns the templates (ARCHITECTURE.md): the trigger-engine asks `GET {SCRM_SENDER_URL}/v1/templates
?account_id=…` with the caller's own API key (the admin key making the change may read), so it sees exactly
what that tenant's key sees and needs no credentials of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from trigger_engine.adapters.settings_db import SettingsRepository
from trigger_engine.configuration import Bootstrap, SettingsRefused, SettingsService, TenantConfigs
from trigger_engine.domain.flows import engine_config
from trigger_engine.domain.model import EngineConfig
from trigger_engine.domain.settings import TenantSettings, merge_patch
from trigger_engine.domain.template_check import CatalogTemplate, accounts_to_fetch, template_faults

log = logging.getLogger(__name__)

# How long one catalog request may take before the change is answered 503 (the caller waits for it).
TIMEOUT_SECONDS = 5.0


class SenderUnavailable(Exception):
    """The sender could not be asked for an account's templates, or did not answer with them (→ 503)."""


class TemplateCatalog:
    """Reads the sender's templates of one account: `GET {sender_url}/v1/templates?account_id=…`."""

    def __init__(self, sender_url: str, *, client: httpx.AsyncClient | None = None,
                 timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        self._url = sender_url.rstrip("/") + "/v1/templates"
        self._client = client or httpx.AsyncClient(timeout=timeout_seconds)

    async def templates(self, account_id: str, *, authorization: str) -> tuple[CatalogTemplate, ...]:
        """The templates the sender lists for `account_id`, asked with the caller's `Authorization` header
        value (`Bearer scrm_…`). Raises SenderUnavailable when the sender cannot be reached or answers
        anything but 200 with a template list."""
        try:
            resp = await self._client.get(self._url, params={"account_id": account_id},
                                          headers={"Authorization": authorization})
        except httpx.HTTPError as exc:
            log.warning("sender not reachable for the templates of account %s: %s", account_id, type(exc).__name__)
            raise SenderUnavailable("the sender cannot be reached to check the templates") from None
        if resp.status_code != 200:
            log.warning("sender answered %s to the templates of account %s", resp.status_code, account_id)
            raise SenderUnavailable(f"the sender answered HTTP {resp.status_code} when asked for the templates "
                                    f"of account {account_id}")
        try:
            rows = resp.json()["templates"]
            return tuple(CatalogTemplate(name=str(r["name"]), language=str(r["language"]), status=str(r["status"]))
                         for r in rows)
        except (ValueError, KeyError, TypeError):
            raise SenderUnavailable("the sender's template list could not be read") from None

    async def catalogs(self, accounts: Iterable[str], *,
                       authorization: str) -> dict[str, tuple[CatalogTemplate, ...]]:
        """account id → its templates, for each of `accounts` (asked concurrently). Raises SenderUnavailable."""
        wanted = sorted(set(accounts))
        found = await asyncio.gather(*(self.templates(a, authorization=authorization) for a in wanted))
        return dict(zip(wanted, found, strict=True))

    async def aclose(self) -> None:
        await self._client.aclose()


class TemplateGuard:
    """Refuses a change of a flow's or the tenant's settings that would bind a template the sender does not
    have on the account it would send from (`domain.template_check`): SettingsRefused with one fault per field.

    It runs before the change's own transaction, on the tenant's configuration as it is: the new settings are
    computed the way `SettingsService` computes them (PUT: the body; PATCH: a merge patch of the current ones).
    A body that does not validate is left to `SettingsService`, which refuses it per field. Nothing is asked of
    the sender when the change binds no new template (turning a flow off, changing a number), so a sender
    that is down blocks only changes that need it (SenderUnavailable → 503). A concurrent change of the same
    tenant between this check and the write is not checked again: the send then fails as it would have without
    the check, with the sender's reason in the decision's story.
    """

    def __init__(self, *, catalog: TemplateCatalog, configs: TenantConfigs, repository: SettingsRepository,
                 bootstrap: Bootstrap, engine: AsyncEngine) -> None:
        self._catalog = catalog
        self._configs = configs
        self._repo = repository
        self._bootstrap = bootstrap
        self._engine = engine

    async def check_flow(self, tenant: str, flow: str, body: Any, *, replace: bool, authorization: str) -> None:
        """Check a PUT (`replace`) or PATCH of `flow`. Raises SettingsRefused, SenderUnavailable."""
        kind = SettingsService.kind(flow)
        before, accounts = await self._current(tenant)
        current = before.flows[flow]
        try:
            new = kind.model_validate(body if replace else merge_patch(current.model_dump(mode="json"), body))
        except ValidationError:
            return  # refused per field by SettingsService
        after = engine_config(tenant, before.settings, {**before.flows, flow: new}, accounts)
        await self._check(before, after, flow=flow, authorization=authorization)

    async def check_settings(self, tenant: str, body: Any, *, authorization: str) -> None:
        """Check a PATCH of the tenant's settings (its default language and default account). Raises
        SettingsRefused, SenderUnavailable."""
        before, accounts = await self._current(tenant)
        try:
            new = TenantSettings.model_validate(merge_patch(before.settings.model_dump(mode="json"), body))
        except ValidationError:
            return  # refused per field by SettingsService
        after = engine_config(tenant, new, before.flows, accounts)
        await self._check(before, after, flow=None, authorization=authorization)

    async def _current(self, tenant: str) -> tuple[EngineConfig, tuple[str, ...]]:
        """The tenant's configuration as it is, and its accounts in the order they were registered."""
        async with self._engine.connect() as conn:
            config = (await self._configs.load(conn, [tenant]))[tenant]
            known = (await self._repo.accounts(conn, [tenant]))[tenant]
        accounts = self._bootstrap.accounts(tenant, known)
        # rebuilt from the same parts as `after`, so that both sides see the accounts the same way
        return engine_config(tenant, config.settings, dict(config.flows), accounts), accounts

    async def _check(self, before: EngineConfig, after: EngineConfig, *, flow: str | None,
                     authorization: str) -> None:
        wanted = accounts_to_fetch(before, after)
        if not wanted:
            return
        catalogs: Mapping[str, tuple[CatalogTemplate, ...]] = await self._catalog.catalogs(
            wanted, authorization=authorization)
        faults = template_faults(before, after, catalogs, flow=flow)
        if faults:
            raise SettingsRefused(faults)
