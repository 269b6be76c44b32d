"""The reachability record's statements (`sender.reachability`, `inbound_log`) and the R-S6 suppression of
queued marketing. Every method takes the caller's connection (its transaction) and runs one statement for the
whole batch; rows are always touched in (tenant, number) or (tenant, idempotency key) order, so two replicas
applying overlapping batches wait for each other instead of deadlocking."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from scrm_common.identity import whatsapp_forms
from sender.domain.reachability import Record

Key = tuple[str, str]  # (tenant, number)

_COLUMNS = ("opted_out_at, opt_out_source, marketing_changed_at, last_inbound_at, timezone, zone_derived, locale, "
            "preferences, marketing_blocked_until")


def _record(row: Any) -> Record:
    preferences = row.preferences
    if isinstance(preferences, str):  # a driver without a jsonb codec
        preferences = json.loads(preferences)
    return Record(opted_out_at=row.opted_out_at, opt_out_source=row.opt_out_source,
                  marketing_changed_at=row.marketing_changed_at, last_inbound_at=row.last_inbound_at,
                  timezone=row.timezone, zone_derived=row.zone_derived, locale=row.locale,
                  preferences=dict(preferences or {}), marketing_blocked_until=row.marketing_blocked_until)


class ReachabilityStore:
    """Reads and writes `sender.reachability` (one row per tenant and number, see `domain.reachability`)."""

    async def block_marketing(self, conn: AsyncConnection, rows: Sequence[tuple[str, str, datetime]],
                              now: datetime) -> None:
        """Meta's per-user marketing limit (131049): no marketing to (tenant, number) before `until` — the later
        of that and any block already stored; a record is created where missing. One statement, rows in
        (tenant, number) order (the order every writer of these rows locks them in)."""
        latest: dict[tuple[str, str], datetime] = {}
        for tenant, number, until in rows:
            latest[(tenant, number)] = max(until, latest.get((tenant, number), until))
        ordered = sorted(latest)
        if not ordered:
            return
        await conn.execute(text(
            "INSERT INTO reachability(tenant, number, marketing_blocked_until, updated_at) "
            "SELECT q.t, q.n, q.u, :now FROM unnest(CAST(:t AS text[]), CAST(:n AS text[]), "
            "CAST(:u AS timestamptz[])) AS q(t, n, u) ORDER BY q.t, q.n "
            "ON CONFLICT (tenant, number) DO UPDATE SET marketing_blocked_until = "
            "GREATEST(reachability.marketing_blocked_until, EXCLUDED.marketing_blocked_until), updated_at = :now"),
            {"t": [k[0] for k in ordered], "n": [k[1] for k in ordered], "u": [latest[k] for k in ordered],
             "now": now})

    async def lock(self, conn: AsyncConnection, keys: Iterable[Key], now: datetime) -> dict[Key, Record]:
        """The records of `keys`, locked for this transaction (rows are created empty — nothing known —
        where missing, stamped `now`), in (tenant, number) order. Two statements."""
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        params = {"t": [k[0] for k in ordered], "n": [k[1] for k in ordered], "now": now}
        await conn.execute(text(
            "INSERT INTO reachability(tenant, number, updated_at) SELECT q.t, q.n, :now "
            "FROM unnest(CAST(:t AS text[]), CAST(:n AS text[])) AS q(t, n) ORDER BY q.t, q.n "
            "ON CONFLICT DO NOTHING"), params)
        rows = await conn.execute(text(
            f"SELECT r.tenant, r.number, {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))} "
            "FROM reachability r JOIN unnest(CAST(:t AS text[]), CAST(:n AS text[])) AS q(t, n) "
            "ON r.tenant = q.t AND r.number = q.n ORDER BY r.tenant, r.number FOR UPDATE OF r"), params)
        return {(r.tenant, r.number): _record(r) for r in rows}

    async def records(self, conn: AsyncConnection, keys: Iterable[Key]) -> dict[Key, Record]:
        """The stored records of `keys` (no lock; a number never seen is absent)."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        rows = await conn.execute(text(
            f"SELECT r.tenant, r.number, {', '.join('r.' + c.strip() for c in _COLUMNS.split(','))} "
            "FROM reachability r JOIN unnest(CAST(:t AS text[]), CAST(:n AS text[])) AS q(t, n) "
            "ON r.tenant = q.t AND r.number = q.n"), {"t": [k[0] for k in wanted], "n": [k[1] for k in wanted]})
        return {(r.tenant, r.number): _record(r) for r in rows}

    async def save(self, conn: AsyncConnection, records: Mapping[Key, Record], now: datetime) -> None:
        """Write changed records (rows locked by `lock` in this transaction); `updated_at` = `now`."""
        if not records:
            return
        ordered = sorted(records.items())
        cols: dict[str, list[object]] = {
            "t": [k[0] for k, _ in ordered], "n": [k[1] for k, _ in ordered],
            "oo": [r.opted_out_at for _, r in ordered], "os": [r.opt_out_source for _, r in ordered],
            "mc": [r.marketing_changed_at for _, r in ordered], "li": [r.last_inbound_at for _, r in ordered],
            "tz": [r.timezone for _, r in ordered], "zd": [r.zone_derived for _, r in ordered],
            "lo": [r.locale for _, r in ordered],
            "pr": [json.dumps(dict(r.preferences), sort_keys=True) for _, r in ordered],
            "mb": [r.marketing_blocked_until for _, r in ordered]}
        await conn.execute(text(
            "UPDATE reachability r SET opted_out_at = q.oo, opt_out_source = q.os, marketing_changed_at = q.mc, "
            "last_inbound_at = q.li, timezone = q.tz, zone_derived = q.zd, locale = q.lo, preferences = q.pr, "
            "marketing_blocked_until = q.mb, updated_at = :now "
            "FROM unnest(CAST(:t AS text[]), CAST(:n AS text[]), CAST(:oo AS timestamptz[]), CAST(:os AS text[]), "
            "CAST(:mc AS timestamptz[]), CAST(:li AS timestamptz[]), CAST(:tz AS text[]), CAST(:zd AS boolean[]), "
            "CAST(:lo AS text[]), CAST(:pr AS jsonb[]), CAST(:mb AS timestamptz[])) "
            "AS q(t, n, oo, os, mc, li, tz, zd, lo, pr, mb) WHERE r.tenant = q.t AND r.number = q.n"),
            cols | {"now": now})

    async def log_inbound(self, conn: AsyncConnection, rows: Sequence[tuple[str, str, datetime, str]],
                          cutoff: datetime) -> None:
        """Record inbound messages `(tenant, number, received_at, event_id)` (a replayed event id is kept
        once) and forget those numbers' inbound messages received before `cutoff` (kept 35 days: R-T4.5's
        reply delays). One statement; a message already older than `cutoff` is not recorded."""
        if not rows:
            return
        numbers = sorted({(t, n) for t, n, _, _ in rows})
        await conn.execute(text(
            "WITH added AS (INSERT INTO inbound_log(tenant, number, received_at, event_id) "
            "SELECT * FROM unnest(CAST(:t AS text[]), CAST(:n AS text[]), CAST(:at AS timestamptz[]), "
            "CAST(:e AS text[])) AS q(t, n, at, e) WHERE q.at >= :cutoff ON CONFLICT DO NOTHING RETURNING 1) "
            "DELETE FROM inbound_log l USING unnest(CAST(:dt AS text[]), CAST(:dn AS text[])) AS d(t, n) "
            "WHERE l.tenant = d.t AND l.number = d.n AND l.received_at < :cutoff"),
            {"t": [r[0] for r in rows], "n": [r[1] for r in rows], "at": [r[2] for r in rows],
             "e": [r[3] for r in rows], "dt": [k[0] for k in numbers], "dn": [k[1] for k in numbers],
             "cutoff": cutoff})

    async def queued_marketing(self, conn: AsyncConnection, numbers: Iterable[Key]) -> list[tuple[str, str]]:
        """The (tenant, idempotency key) of every queued marketing message to these numbers — sent to any
        WhatsApp form of the number (`to_phone`) or answered for one (`wa_id`) — not locked, sorted."""
        forms = sorted({(t, f) for t, n in numbers for f in whatsapp_forms(n)})
        if not forms:
            return []
        rows = await conn.execute(text(
            "SELECT m.tenant, m.idempotency_key FROM messages m "
            "JOIN unnest(CAST(:t AS text[]), CAST(:p AS text[])) AS q(t, p) ON m.tenant = q.t AND m.to_phone = q.p "
            "WHERE m.state = 'queued' AND m.category = 'marketing' "
            "UNION SELECT m.tenant, m.idempotency_key FROM messages m "
            "JOIN unnest(CAST(:t AS text[]), CAST(:w AS text[])) AS q(t, w) ON m.tenant = q.t AND m.wa_id = q.w "
            "WHERE m.state = 'queued' AND m.category = 'marketing'"),
            {"t": [t for t, _ in forms], "p": ["+" + f for _, f in forms], "w": [f for _, f in forms]})
        return sorted((r.tenant, r.idempotency_key) for r in rows)

    async def suppress(self, conn: AsyncConnection, keys: Sequence[tuple[str, str]], *, rule: str, reason: str,
                       now: datetime) -> list[tuple[str, dict[str, object]]]:
        """Suppress these messages (rows already locked by `SendLog.lock_messages`) if they are still queued
        marketing: state `suppressed`, `rule`, `suppressed_at` = `now`, `error_reason` = `reason`. Returns
        (tenant, stored command) of each row suppressed now — none on a replay."""
        if not keys:
            return []
        rows = await conn.execute(text(
            "UPDATE messages m SET state = 'suppressed', rule = :rule, suppressed_at = :now, error_reason = :reason, "
            "held_by = NULL FROM unnest(CAST(:t AS text[]), CAST(:k AS text[])) AS q(t, k) "
            "WHERE m.tenant = q.t AND m.idempotency_key = q.k AND m.state = 'queued' AND m.category = 'marketing' "
            "RETURNING m.tenant, m.command"),
            {"rule": rule, "now": now, "reason": reason, "t": [t for t, _ in keys], "k": [k for _, k in keys]})
        return [(r.tenant, r.command if isinstance(r.command, dict) else json.loads(r.command)) for r in rows]
