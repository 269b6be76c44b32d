"""The sender's tables: accounts and their pacing, the template catalog, the send log."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sender.domain.pacing import PacingPolicy, PacingState
from sender.domain.templates import Template


def default_catalog() -> list[Template]:
    """The catalog every tenant starts with (the templates the built-in flows use)."""
    raw = json.loads(resources.files("sender").joinpath("catalog/default_templates.json").read_text())
    return [Template(t["name"], t["language"], t["category"], t["body"], t.get("status", "APPROVED")) for t in raw]


@dataclass(frozen=True, slots=True)
class Account:
    tenant: str
    account_id: str
    access_token: str
    policy: PacingPolicy
    pacing: PacingState
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message handed to the dispatcher: "sending" is already recorded."""

    tenant: str
    idempotency_key: str
    command: dict[str, object]
    attempts: int


class Catalog:
    """Templates per tenant, cached briefly; a tenant without its own catalog uses the default one."""

    def __init__(self, engine: AsyncEngine, *, ttl_seconds: float = 30.0) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, dict[tuple[str, str], Template]]] = {}
        self._default = {(t.name, t.language): t for t in default_catalog()}

    async def lookup(self, tenant: str, name: str, language: str) -> Template | None:
        now = time.monotonic()
        hit = self._cache.get(tenant)
        if hit is None or hit[0] < now:
            async with self._engine.connect() as conn:
                rows = (await conn.execute(text(
                    "SELECT name, language, category, body, status FROM templates WHERE tenant = :t"),
                    {"t": tenant})).all()
            own = {(r.name, r.language): Template(r.name, r.language, r.category, r.body, r.status) for r in rows}
            hit = (now + self._ttl, own or self._default)
            self._cache[tenant] = hit
        return hit[1].get((name, language))


class SendLog:
    """Every statement the sender runs; methods take the caller's connection (its transaction)."""

    async def bootstrap(self, conn: AsyncConnection, *, tenant: str, account_id: str, access_token: str,
                        throughput: float, created_at: datetime) -> None:
        await conn.execute(text(
            "INSERT INTO accounts(tenant, account_id, access_token, throughput_per_second, created_at) "
            "VALUES (:t, :a, :tok, :mps, :created) ON CONFLICT (tenant, account_id) DO UPDATE SET "
            "access_token = EXCLUDED.access_token, throughput_per_second = EXCLUDED.throughput_per_second"),
            {"t": tenant, "a": account_id, "tok": access_token, "mps": throughput, "created": created_at})
        for tpl in default_catalog():
            await conn.execute(text(
                "INSERT INTO templates(tenant, name, language, category, body, status) "
                "VALUES (:t, :n, :l, :c, :b, :s) ON CONFLICT DO NOTHING"),
                {"t": tenant, "n": tpl.name, "l": tpl.language, "c": tpl.category, "b": tpl.body, "s": tpl.status})

    async def known_accounts(self, conn: AsyncConnection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        rows = await conn.execute(text(
            "SELECT a.tenant, a.account_id FROM accounts a JOIN unnest(CAST(:t AS text[]), CAST(:a AS text[])) "
            "AS q(t, a) ON a.tenant = q.t AND a.account_id = q.a"),
            {"t": [k[0] for k in keys], "a": [k[1] for k in keys]})
        return {(r.tenant, r.account_id) for r in rows}

    async def invalid_numbers(self, conn: AsyncConnection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
        if not keys:
            return set()
        rows = await conn.execute(text(
            "SELECT i.tenant, i.phone FROM invalid_numbers i JOIN unnest(CAST(:t AS text[]), CAST(:p AS text[])) "
            "AS q(t, p) ON i.tenant = q.t AND i.phone = q.p"),
            {"t": [k[0] for k in keys], "p": [k[1] for k in keys]})
        return {(r.tenant, r.phone) for r in rows}

    async def record(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> set[tuple[str, str]]:
        """Insert send-log rows (queued or failed); return the (tenant, key) pairs that were new."""
        if not rows:
            return set()
        cols = ["tenant", "idempotency_key", "account_id", "flow", "category", "contact_key", "to_phone",
                "command", "state", "next_attempt_at", "queued_at", "event_ingested_at", "error_reason"]
        result = await conn.execute(text(
            f"INSERT INTO messages({', '.join(cols)}) SELECT * FROM unnest("
            "CAST(:tenant AS text[]), CAST(:idempotency_key AS text[]), CAST(:account_id AS text[]), "
            "CAST(:flow AS text[]), CAST(:category AS text[]), CAST(:contact_key AS text[]), "
            "CAST(:to_phone AS text[]), CAST(:command AS jsonb[]), CAST(:state AS text[]), "
            "CAST(:next_attempt_at AS timestamptz[]), CAST(:queued_at AS timestamptz[]), "
            "CAST(:event_ingested_at AS timestamptz[]), CAST(:error_reason AS text[])) "
            "ON CONFLICT DO NOTHING RETURNING tenant, idempotency_key"),
            {c: [r[c] for r in rows] for c in cols})
        return {(r.tenant, r.idempotency_key) for r in result}

    async def accounts_with_due_work(self, conn: AsyncConnection, now: datetime) -> list[tuple[str, str]]:
        rows = await conn.execute(text(
            "SELECT a.tenant, a.account_id FROM accounts a WHERE EXISTS (SELECT 1 FROM messages m "
            "WHERE m.tenant = a.tenant AND m.account_id = a.account_id AND m.state = 'queued' "
            "AND m.next_attempt_at <= :now)"), {"now": now})
        return [(r.tenant, r.account_id) for r in rows]

    async def lock_account(self, conn: AsyncConnection, tenant: str, account_id: str) -> Account | None:
        """The account row, locked for this transaction; None when another sender holds it."""
        r = (await conn.execute(text(
            "SELECT * FROM accounts WHERE tenant = :t AND account_id = :a FOR UPDATE SKIP LOCKED"),
            {"t": tenant, "a": account_id})).first()
        if r is None:
            return None
        policy = PacingPolicy(
            marketing_min_interval=timedelta(seconds=r.marketing_min_interval_s),
            marketing_max_interval=timedelta(seconds=r.marketing_max_interval_s),
            marketing_per_hour=r.marketing_per_hour, new_account_per_day=r.new_account_per_day,
            new_account_days=r.new_account_days, throughput_per_second=r.throughput_per_second)
        return Account(r.tenant, r.account_id, r.access_token, policy,
                       PacingState(r.next_marketing_at, r.utility_tokens, r.tokens_at), r.created_at)

    async def marketing_counts(self, conn: AsyncConnection, account: Account, now: datetime) -> tuple[int, int]:
        """Marketing messages handed to the provider in the last hour and the last day."""
        r = (await conn.execute(text(
            "SELECT count(*) FILTER (WHERE claimed_at > :hour) AS hour, count(*) AS day FROM messages "
            "WHERE tenant = :t AND account_id = :a AND category = 'marketing' AND claimed_at > :day"),
            {"t": account.tenant, "a": account.account_id, "hour": now - timedelta(hours=1),
             "day": now - timedelta(days=1)})).one()
        return int(r.hour), int(r.day)

    async def claim(self, conn: AsyncConnection, account: Account, now: datetime, *, utility: int,
                    marketing: int) -> list[Claimed]:
        """Mark due messages "sending" (recorded before the provider call) and return them."""
        claimed: list[Claimed] = []
        for limit, marketing_only in ((utility, False), (marketing, True)):
            if limit <= 0:
                continue
            rows = (await conn.execute(text(
                "UPDATE messages SET state = 'sending', claimed_at = :now, attempts = attempts + 1 "
                "WHERE (tenant, idempotency_key) IN (SELECT tenant, idempotency_key FROM messages "
                "WHERE tenant = :t AND account_id = :a AND state = 'queued' AND next_attempt_at <= :now "
                f"AND category {'=' if marketing_only else '<>'} 'marketing' "
                "ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED) "
                "RETURNING tenant, idempotency_key, command, attempts"),
                {"t": account.tenant, "a": account.account_id, "now": now, "n": limit})).all()
            claimed.extend(Claimed(r.tenant, r.idempotency_key, r.command, r.attempts) for r in rows)
        return claimed

    async def save_pacing(self, conn: AsyncConnection, account: Account, state: PacingState) -> None:
        await conn.execute(text(
            "UPDATE accounts SET next_marketing_at = :n, utility_tokens = :u, tokens_at = :at "
            "WHERE tenant = :t AND account_id = :a"),
            {"n": state.next_marketing_at, "u": state.utility_tokens, "at": state.tokens_at,
             "t": account.tenant, "a": account.account_id})

    async def mark_sent(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'sent', wamid = COALESCE(wamid, :wamid), "
                "sent_at = COALESCE(sent_at, :at), error_code = NULL, error_reason = NULL "
                "WHERE tenant = :tenant AND idempotency_key = :key AND state IN ('sending', 'sent')"), rows)

    async def mark_retry(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'queued', next_attempt_at = :next, error_code = :code, "
                "error_reason = :reason WHERE tenant = :tenant AND idempotency_key = :key AND state = 'sending'"),
                rows)

    async def mark_failed(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'failed', error_code = :code, error_reason = :reason "
                "WHERE tenant = :tenant AND idempotency_key = :key AND state = 'sending'"), rows)

    async def mark_invalid_numbers(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        if rows:
            await conn.execute(text(
                "INSERT INTO invalid_numbers(tenant, phone, error_code, marked_at) "
                "VALUES (:tenant, :phone, :code, :at) ON CONFLICT (tenant, phone) DO NOTHING"), rows)

    async def confirm_by_evidence(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> int:
        """The provider reported on a message: it was accepted, whatever our own record says."""
        if not rows:
            return 0
        result = await conn.execute(text(
            "UPDATE messages m SET state = 'sent', wamid = COALESCE(m.wamid, q.wamid), "
            "sent_at = COALESCE(m.sent_at, q.at) FROM unnest(CAST(:t AS text[]), CAST(:k AS text[]), "
            "CAST(:w AS text[]), CAST(:a AS timestamptz[])) AS q(tenant, key, wamid, at) "
            "WHERE m.tenant = q.tenant AND m.idempotency_key = q.key AND m.attempts > 0 "
            "AND m.state IN ('sending', 'queued') RETURNING m.idempotency_key"),
            {"t": [r["tenant"] for r in rows], "k": [r["key"] for r in rows], "w": [r["wamid"] for r in rows],
             "a": [r["at"] for r in rows]})
        return len(result.all())

    async def mark_failed_by_provider(self, conn: AsyncConnection, rows: Sequence[dict[str, object]]) -> None:
        """The provider accepted a message and later reported it failed (async error, CLOUD-API §4.2)."""
        if rows:
            await conn.execute(text(
                "UPDATE messages SET state = 'failed', error_code = :code, error_reason = :reason "
                "WHERE tenant = :tenant AND idempotency_key = :key AND attempts > 0 AND state IN ('sending', 'sent')"),
                rows)

    async def release_doubtful(self, conn: AsyncConnection, now: datetime, cutoff: datetime) -> int:
        """Messages "sending" since before `cutoff` with no evidence: queue them to be sent again."""
        result = await conn.execute(text(
            "UPDATE messages SET state = 'queued', next_attempt_at = :now, "
            "error_reason = 'no evidence of delivery after a crash or timeout; resending' "
            "WHERE state = 'sending' AND claimed_at < :cutoff"), {"now": now, "cutoff": cutoff})
        return int(result.rowcount or 0)

    async def message(self, conn: AsyncConnection, tenant: str, key: str) -> dict[str, object] | None:
        r = (await conn.execute(text(
            "SELECT idempotency_key, account_id, flow, category, contact_key, to_phone, state, attempts, wamid, "
            "error_code, error_reason, queued_at, sent_at FROM messages WHERE tenant = :t AND idempotency_key = :k"),
            {"t": tenant, "k": key})).first()
        return dict(r._mapping) if r else None

    async def recent(self, conn: AsyncConnection, tenant: str, contact_key: str | None, limit: int) -> list[dict]:
        rows = await conn.execute(text(
            "SELECT idempotency_key, account_id, flow, category, contact_key, to_phone, state, attempts, wamid, "
            "error_code, error_reason, queued_at, sent_at FROM messages WHERE tenant = :t "
            "AND (CAST(:c AS text) IS NULL OR contact_key = :c) ORDER BY queued_at DESC LIMIT :n"),
            {"t": tenant, "c": contact_key, "n": limit})
        return [dict(r._mapping) for r in rows]

    async def accounts(self, conn: AsyncConnection, tenant: str) -> list[dict]:
        rows = await conn.execute(text(
            "SELECT account_id, marketing_min_interval_s, marketing_max_interval_s, marketing_per_hour, "
            "new_account_per_day, new_account_days, throughput_per_second, created_at FROM accounts "
            "WHERE tenant = :t ORDER BY account_id"), {"t": tenant})
        return [dict(r._mapping) for r in rows]
