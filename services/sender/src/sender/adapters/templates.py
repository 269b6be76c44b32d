"""Templates per WhatsApp Business Account: the `templates` table, and syncing it from the Cloud API's
management endpoint (`GET /{version}/{waba_id}/message_templates`, CLOUD-API.md §2.4, §6.5).

Sync: every page is read (`paging.cursors.after` until Meta announces no `next`), backing off on the
management API's rate limits (80007 WABA, 4 app) within a bounded budget; then, in one transaction, each
listed template is upserted and every template of that WABA no longer listed is marked `DELETED` (kept, so
a send naming it fails with "template x (en) is deleted" and old send-log rows still make sense). A status
a webhook changed after the listing began is newer than the listing and is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.clock import Clock
from sender.adapters.cloud_api import CloudApiClient, NotSent, Rejected, TemplatePage
from sender.domain.templates import BadTemplate, Template, from_components

log = logging.getLogger(__name__)

# The management API's rate limits (CLOUD-API.md §6.5): 80007 per WABA, 4 per app. Both are worth waiting for.
RATE_LIMIT_CODES = frozenset({80007, 4})
# Failures that say "not now" rather than "no": asked again within the budget, then 503 (never a 422).
TRANSIENT_CODES = frozenset({1, 2, 130429, 131000, 131016})


def _transient(result: Rejected) -> bool:
    """A refusal worth asking again: a rate limit, a temporary Meta failure, an HTTP 429 or 5xx."""
    return (result.code in RATE_LIMIT_CODES or result.code in TRANSIENT_CODES or result.http_status == 429
            or result.http_status >= 500)
# A WABA holds at most 250 templates (§6.5); more pages than this is a provider looping its cursor.
MAX_PAGES = 1000

_COLUMNS = ("waba_id, name, language, template_id, category, status, quality, components, parameter_format, "
            "rejected_reason, synced_at, updated_at")


@dataclass(frozen=True, slots=True)
class SyncTarget:
    """An account whose WABA's templates are synced, with the token that may list them (never in its repr)."""

    account_id: str
    waba_id: str | None
    access_token: str = field(repr=False)


def _masked(text: str, token: str) -> str:
    """`text` (a provider's words) with the access token replaced by *** (a provider may echo it)."""
    return text.replace(token, "***") if token else text


async def plaintext_account_tokens(conn: AsyncConnection, tenant: str, account_id: str | None) -> list[SyncTarget]:
    """The tenant's accounts (or the one named) with their access token as the `accounts` table held it before
    tokens were encrypted (issue 7's migration 005). STOPGAP: `main.py` passes `account_tokens(cipher.decrypt)`
    as `TemplateSync(targets=…)` once the accounts repository (adapters/accounts.py) lands."""
    rows = await conn.execute(text(
        "SELECT account_id, waba_id, access_token FROM accounts WHERE tenant = :t "
        "AND (CAST(:a AS text) IS NULL OR account_id = :a) ORDER BY account_id"), {"t": tenant, "a": account_id})
    return [SyncTarget(r.account_id, r.waba_id, r.access_token) for r in rows]


def account_tokens(decrypt: Callable[[str], str]) -> Callable[[AsyncConnection, str, str | None],
                                                              Awaitable[list[SyncTarget]]]:
    """The tenant's accounts (or the one named) with their access token decrypted by `decrypt` (the accounts
    repository's `TokenCipher.decrypt`; rows with `token_encrypted` false hold it in plain). An account whose
    token cannot be decrypted is refused with 422 `token_unreadable` (set it again with PATCH /v1/accounts)."""

    async def read(conn: AsyncConnection, tenant: str, account_id: str | None) -> list[SyncTarget]:
        rows = await conn.execute(text(
            "SELECT account_id, waba_id, access_token, token_encrypted FROM accounts WHERE tenant = :t "
            "AND (CAST(:a AS text) IS NULL OR account_id = :a) ORDER BY account_id"), {"t": tenant, "a": account_id})
        out: list[SyncTarget] = []
        for r in rows:
            try:
                token = decrypt(r.access_token) if r.token_encrypted else r.access_token
            except Exception:  # the cipher's UnreadableToken: no key of SCRM_SECRETS_KEY decrypts it
                raise SyncFailed(422, "token_unreadable", f"the access token of account {r.account_id} cannot be "
                                 "decrypted with SCRM_SECRETS_KEY; set it again with PATCH /v1/accounts") from None
            out.append(SyncTarget(r.account_id, r.waba_id, token))
        return out

    return read


TargetReader = Callable[[AsyncConnection, str, str | None], Awaitable[list[SyncTarget]]]


def _row(template: Template) -> dict[str, Any]:
    return {"name": template.name, "language": template.language, "template_id": template.template_id,
            "category": template.category, "status": template.status, "quality": template.quality,
            "components": json.dumps(template.components()), "parameter_format": template.parameter_format,
            "rejected_reason": template.rejected_reason}


class TemplateStore:
    """Statements on `templates`; methods take the caller's connection (its transaction)."""

    async def seed(self, conn: AsyncConnection, waba_id: str, templates: Sequence[Template], now: datetime) -> int:
        """Add the templates a WABA does not have yet (the packaged catalog at bootstrap); the number added.

        A template already there — synced, or paused by a webhook — is left as it is."""
        added = 0
        for template in templates:
            result = await conn.execute(text(
                "INSERT INTO templates(waba_id, name, language, template_id, category, status, quality, components, "
                "parameter_format, rejected_reason, updated_at) VALUES (:w, :name, :language, :template_id, "
                ":category, :status, :quality, CAST(:components AS jsonb), :parameter_format, :rejected_reason, :now) "
                "ON CONFLICT DO NOTHING"), _row(template) | {"w": waba_id, "now": now})
            added += int(result.rowcount or 0)
        return added

    async def replace_listed(self, conn: AsyncConnection, waba_id: str, templates: Sequence[Template], *,
                             started_at: datetime, now: datetime) -> tuple[int, int]:
        """Store what a complete listing of the WABA returned: upsert each template, mark the ones not listed
        `DELETED`. A row changed after `started_at` (a webhook during the listing) keeps its newer state.
        Returns (templates stored, templates marked deleted)."""
        stored = 0
        for template in templates:
            result = await conn.execute(text(
                "INSERT INTO templates(waba_id, name, language, template_id, category, status, quality, components, "
                "parameter_format, rejected_reason, synced_at, updated_at) VALUES (:w, :name, :language, "
                ":template_id, :category, :status, :quality, CAST(:components AS jsonb), :parameter_format, "
                ":rejected_reason, :now, :now) ON CONFLICT (waba_id, name, language) DO UPDATE SET "
                "template_id = EXCLUDED.template_id, category = EXCLUDED.category, status = EXCLUDED.status, "
                "quality = EXCLUDED.quality, components = EXCLUDED.components, "
                "parameter_format = EXCLUDED.parameter_format, rejected_reason = EXCLUDED.rejected_reason, "
                "synced_at = EXCLUDED.synced_at, updated_at = CASE WHEN (templates.template_id, templates.category, "
                "templates.status, templates.quality, templates.components, templates.rejected_reason) IS NOT "
                "DISTINCT FROM (EXCLUDED.template_id, EXCLUDED.category, EXCLUDED.status, EXCLUDED.quality, "
                "EXCLUDED.components, EXCLUDED.rejected_reason) THEN templates.updated_at ELSE EXCLUDED.updated_at END "
                "WHERE templates.updated_at <= :started"),
                _row(template) | {"w": waba_id, "now": now, "started": started_at})
            stored += 1 if result.rowcount else 0
        listed = [(t.name, t.language) for t in templates]
        deleted = await conn.execute(text(
            "UPDATE templates SET status = 'DELETED', updated_at = :now WHERE waba_id = :w AND status <> 'DELETED' "
            "AND updated_at <= :started AND (name, language) NOT IN (SELECT * FROM unnest(CAST(:n AS text[]), "
            "CAST(:l AS text[])))"),
            {"w": waba_id, "now": now, "started": started_at, "n": [k[0] for k in listed],
             "l": [k[1] for k in listed]})
        return stored, int(deleted.rowcount or 0)

    async def apply_update(self, conn: AsyncConnection, *, tenant: str, waba_id: str | None, name: str,
                           language: str | None, status: str | None, quality: str | None, category: str | None,
                           reason: str | None, at: datetime) -> int:
        """A template webhook (status, quality or category) on the template `name` (every language when
        `language` is None) of `waba_id` — of any WABA of the tenant's accounts when None; only WABAs of
        the tenant's accounts are touched. The rows changed (0: unknown template, or nothing new)."""
        result = await conn.execute(text(
            "UPDATE templates t SET status = COALESCE(:s, t.status), quality = COALESCE(:q, t.quality), "
            "category = COALESCE(:c, t.category), "
            "rejected_reason = CASE WHEN :s = 'REJECTED' THEN :r WHEN CAST(:s AS text) IS NULL THEN t.rejected_reason "
            "ELSE NULL END, updated_at = :at "
            "WHERE t.name = :n AND (CAST(:l AS text) IS NULL OR t.language = :l) "
            "AND t.waba_id IN (SELECT a.waba_id FROM accounts a WHERE a.tenant = :tenant AND a.waba_id IS NOT NULL "
            "AND (CAST(:w AS text) IS NULL OR a.waba_id = :w)) "
            "AND (t.status, t.quality, t.category) IS DISTINCT FROM "
            "(COALESCE(:s, t.status), COALESCE(:q, t.quality), COALESCE(:c, t.category))"),
            {"s": status, "q": quality, "c": category, "r": reason, "at": at, "n": name, "l": language,
             "tenant": tenant, "w": waba_id})
        return int(result.rowcount or 0)

    async def list(self, conn: AsyncConnection, tenant: str, *, account_id: str | None = None,
                   name: str | None = None, language: str | None = None, status: str | None = None,
                   category: str | None = None) -> list[dict[str, Any]]:
        """The templates of the WABAs of the tenant's accounts (or of the one named), filtered, by name and
        language; each with the tenant's `account_ids` on that WABA."""
        rows = await conn.execute(text(
            "WITH mine AS (SELECT waba_id, array_agg(account_id ORDER BY account_id) AS account_ids FROM accounts "
            "WHERE tenant = :t AND waba_id IS NOT NULL AND (CAST(:a AS text) IS NULL OR account_id = :a) "
            "GROUP BY waba_id) "
            f"SELECT {', '.join('tp.' + c.strip() for c in _COLUMNS.split(','))}, mine.account_ids "
            "FROM templates tp JOIN mine ON mine.waba_id = tp.waba_id "
            "WHERE (CAST(:n AS text) IS NULL OR tp.name = :n) AND (CAST(:l AS text) IS NULL OR tp.language = :l) "
            "AND (CAST(:s AS text) IS NULL OR tp.status = upper(:s)) "
            "AND (CAST(:c AS text) IS NULL OR tp.category = lower(:c)) "
            "ORDER BY tp.name, tp.language, tp.waba_id"),
            {"t": tenant, "a": account_id, "n": name, "l": language, "s": status, "c": category})
        return [dict(r._mapping) for r in rows]


class SyncFailed(Exception):
    """A sync that could not complete; `status` is the HTTP answer it becomes (503: try later; 422: the provider
    refused it, e.g. 190 for a revoked token, or the account has no WABA id)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class UnknownAccount(LookupError):
    """The tenant has no account of that id."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long a sync waits for the management API's rate limits: `attempts` tries per page, waiting
    `base_s` · 2^n (at most `cap_s`, with jitter) between them."""

    attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 8.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait before try `attempt + 1` (attempt ≥ 1): half to all of base · 2^(attempt-1), capped."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return rng.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True, slots=True)
class AccountSynced:
    account_id: str
    waba_id: str
    templates: int


class TemplateSync:
    """Pulls each WABA's templates from the Cloud API into `templates` (POST /v1/templates/sync, bootstrap)."""

    def __init__(self, *, engine: AsyncEngine, client: CloudApiClient, clock: Clock, store: TemplateStore | None = None,
                 targets: TargetReader = plaintext_account_tokens, page_size: int = 100,
                 backoff: Backoff | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 rng: random.Random | None = None) -> None:
        self._engine = engine
        self._client = client
        self._clock = clock
        self._store = store or TemplateStore()
        self._targets = targets
        self._page_size = page_size
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def sync(self, tenant: str, account_id: str | None = None) -> list[AccountSynced]:
        """Sync the WABA of the tenant's account `account_id` (every account's when None); one entry per
        account synced (accounts without a WABA id are skipped). Raises UnknownAccount for an account the
        tenant does not have, SyncFailed when the provider refuses or stays rate-limited past the budget
        (nothing of that WABA is changed then; WABAs synced before stay synced)."""
        async with self._engine.connect() as conn:
            targets = await self._targets(conn, tenant, account_id)
        if account_id is not None and not targets:
            raise UnknownAccount(account_id)
        if account_id is not None and targets[0].waba_id is None:
            raise SyncFailed(422, "no_waba", f"account {account_id} has no WABA id to list templates of")
        done: dict[str, int] = {}
        out: list[AccountSynced] = []
        for target in targets:
            if target.waba_id is None:
                continue
            if target.waba_id not in done:
                done[target.waba_id] = await self._sync_waba(tenant, target)
            out.append(AccountSynced(target.account_id, target.waba_id, done[target.waba_id]))
        return out

    async def _sync_waba(self, tenant: str, target: SyncTarget) -> int:
        assert target.waba_id is not None
        waba_id = target.waba_id
        started = self._clock.now()
        listed: dict[tuple[str, str], Template] = {}
        after: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._page(target, after)
            for raw in page.data:
                template = _listed(raw)
                if template is None:
                    log.warning("skipped an unreadable template of WABA %s: %s", waba_id, str(raw)[:200],
                                extra={"tenant": tenant})
                    continue
                listed[(template.name, template.language)] = template
            if not page.has_next or not page.after or page.after == after:
                break
            after = page.after
        else:
            raise SyncFailed(503, "provider_unavailable", f"message_templates of WABA {waba_id} never ended its paging")
        async with self._engine.begin() as conn:
            stored, deleted = await self._store.replace_listed(conn, waba_id, list(listed.values()),
                                                               started_at=started, now=self._clock.now())
        log.info("synced %d templates of WABA %s (%d stored, %d no longer listed)", len(listed), waba_id, stored,
                 deleted, extra={"tenant": tenant})
        return len(listed)

    async def _page(self, target: SyncTarget, after: str | None) -> TemplatePage:
        """One page, asked again on a rate limit or no answer while the backoff budget lasts."""
        assert target.waba_id is not None
        last = ""
        for attempt in range(1, self._backoff.attempts + 1):
            result = await self._client.list_templates(waba_id=target.waba_id, access_token=target.access_token,
                                                       after=after, limit=self._page_size)
            if isinstance(result, TemplatePage):
                return result
            if isinstance(result, Rejected) and not _transient(result):
                raise SyncFailed(422, "provider_refused", f"the Cloud API refused listing the templates of WABA "
                                 f"{target.waba_id} for account {target.account_id}: ({result.code}) "
                                 f"{_masked(result.details, target.access_token)}")
            last = (f"({result.code}, HTTP {result.http_status}): {_masked(result.details, target.access_token)}"
                    if isinstance(result, Rejected) else
                    f"no answer: {_masked(result.reason, target.access_token)}" if isinstance(result, NotSent)
                    else str(result))
            if attempt < self._backoff.attempts:
                await self._sleep(self._backoff.delay(attempt, self._rng))
        raise SyncFailed(503, "provider_unavailable", f"listing the templates of WABA {target.waba_id} failed "
                         f"{self._backoff.attempts} times; last: {last}")


def _listed(raw: dict[str, Any]) -> Template | None:
    """A template as `message_templates` lists it, or None when it cannot be read."""
    quality = raw.get("quality_score")
    score = quality.get("score") if isinstance(quality, dict) else quality if isinstance(quality, str) else None
    rejected = raw.get("rejected_reason")
    try:
        return from_components(
            name=str(raw.get("name") or ""), language=str(raw.get("language") or ""),
            category=str(raw.get("category") or "utility"), status=str(raw.get("status") or "PENDING"),
            components=raw.get("components") if isinstance(raw.get("components"), list) else [],
            template_id=str(raw["id"]) if raw.get("id") is not None else None,
            quality=str(score) if score else None,
            rejected_reason=str(rejected) if rejected and rejected != "NONE" else None,
            parameter_format=str(raw.get("parameter_format") or "POSITIONAL"))
    except BadTemplate:
        return None


async def seed_packaged_catalog(conn: AsyncConnection, waba_id: str, templates: Sequence[Template],
                                now: datetime) -> int:
    """Bootstrap: the WABA gets the packaged catalog's templates it lacks (idempotent; a synced or paused
    template stays as it is), so the built-in flows send even before the provider could be asked."""
    return await TemplateStore().seed(conn, waba_id, templates, now)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except TimeoutError:
        return False


async def sync_with_retries(sync: TemplateSync, tenant: str, account_id: str, stop: asyncio.Event, *,
                            attempts: int = 5, first_wait_s: float = 2.0,
                            wait: Callable[[asyncio.Event, float], Awaitable[bool]] = _stopped_within) -> int:
    """Sync the account's WABA, asking again while the provider is unavailable (waiting 2, 4, 8 … s, at most
    `attempts` tries, ending early at `stop`); given up at once on a refusal (422: a token the provider
    rejects, no WABA) or an account the tenant does not have. Never raises; returns the tries made."""
    delay = first_wait_s
    for attempt in range(1, attempts + 1):
        try:
            synced = await sync.sync(tenant, account_id)
            log.info("bootstrap template sync: %s", ", ".join(f"{s.waba_id}: {s.templates}" for s in synced),
                     extra={"tenant": tenant})
            return attempt
        except UnknownAccount:
            log.warning("bootstrap template sync skipped: tenant %s has no account %s (another tenant owns the "
                        "number?)", tenant, account_id, extra={"tenant": tenant})
            return attempt
        except SyncFailed as exc:
            log.warning("bootstrap template sync failed (try %d of %d): %s", attempt, attempts, exc,
                        extra={"tenant": tenant})
            if exc.status == 422:
                return attempt
        except Exception as exc:  # a database hiccup at start must not stop the sender
            log.warning("bootstrap template sync failed (try %d of %d): %r", attempt, attempts, exc,
                        extra={"tenant": tenant})
        if attempt < attempts and await wait(stop, delay):
            return attempt
        delay *= 2
    return attempts


def sync_at_start(sync: TemplateSync, tenant: str, account_id: str, *, attempts: int = 5,
                  first_wait_s: float = 2.0) -> Callable[[asyncio.Event], Awaitable[None]]:
    """A `serve` loop: sync the bootstrap account's WABA once the process runs (`sync_with_retries`: the
    provider may start after the sender), then wait for the stop. A failure is logged, never fatal: the
    seeded catalog keeps the built-in flows sending."""

    async def loop(stop: asyncio.Event) -> None:
        await sync_with_retries(sync, tenant, account_id, stop, attempts=attempts, first_wait_s=first_wait_s)
        await stop.wait()

    loop.__name__ = "template-sync-at-start"
    return loop
