"""The engine's tables: inbox, contact profiles, send reservations, decision log, outbox."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from scrm_common.db.inbox import claim_events
from trigger_engine.domain import ContactProfile


@dataclass(frozen=True, slots=True)
class DecisionRow:
    tenant: str
    event_id: str
    event_type: str
    contact_key: str
    flow: str
    outcome: str
    reason: str | None
    idempotency_key: str | None
    decided_at: datetime


class EngineRepository:
    """One method per round trip; every method takes the batch's connection (one transaction)."""

    async def claim_events(self, conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Record events in the inbox; return those not seen before."""
        return await claim_events(conn, keys)

    async def load_profiles(
        self, conn: AsyncConnection, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], ContactProfile]:
        keys = list(keys)
        if not keys:
            return {}
        rows = await conn.execute(text(
            "SELECT c.* FROM contacts c JOIN unnest(CAST(:t AS text[]), CAST(:k AS text[])) AS q(tenant, ck) "
            "ON c.tenant = q.tenant AND c.contact_key = q.ck"),
            {"t": [k[0] for k in keys], "k": [k[1] for k in keys]})
        return {
            (r.tenant, r.contact_key): ContactProfile(
                contact_key=r.contact_key, phone=r.phone, name=r.name, locale=r.locale,
                timezone=r.timezone, opted_in=r.opted_in)
            for r in rows
        }

    async def save_profiles(
        self, conn: AsyncConnection, profiles: dict[tuple[str, str], ContactProfile], now: datetime
    ) -> None:
        if not profiles:
            return
        await conn.execute(text(
            "INSERT INTO contacts(tenant, contact_key, phone, name, locale, timezone, opted_in, updated_at) "
            "VALUES (:tenant, :contact_key, :phone, :name, :locale, :timezone, :opted_in, :updated_at) "
            "ON CONFLICT (tenant, contact_key) DO UPDATE SET phone = EXCLUDED.phone, name = EXCLUDED.name, "
            "locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, opted_in = EXCLUDED.opted_in, "
            "updated_at = EXCLUDED.updated_at"),
            [{"tenant": t, "contact_key": p.contact_key, "phone": p.phone, "name": p.name, "locale": p.locale,
              "timezone": p.timezone, "opted_in": p.opted_in, "updated_at": now}
             for (t, _), p in profiles.items()])

    async def reserve_sends(
        self, conn: AsyncConnection, rows: Sequence[tuple[str, str, str, str, str]], now: datetime
    ) -> set[tuple[str, str]]:
        """Reserve (tenant, idempotency key, flow, contact, event) rows; return the keys newly reserved."""
        if not rows:
            return set()
        result = await conn.execute(text(
            "INSERT INTO sends(tenant, idempotency_key, flow, contact_key, event_id, decided_at) "
            "SELECT t, k, f, c, e, :now FROM unnest(CAST(:t AS text[]), CAST(:k AS text[]), "
            "CAST(:f AS text[]), CAST(:c AS text[]), CAST(:e AS text[])) AS q(t, k, f, c, e) "
            "ON CONFLICT DO NOTHING RETURNING tenant, idempotency_key"),
            {"t": [r[0] for r in rows], "k": [r[1] for r in rows], "f": [r[2] for r in rows],
             "c": [r[3] for r in rows], "e": [r[4] for r in rows], "now": now})
        return {(r.tenant, r.idempotency_key) for r in result}

    async def record_decisions(self, conn: AsyncConnection, rows: Sequence[DecisionRow]) -> None:
        if not rows:
            return
        await conn.execute(text(
            "INSERT INTO decisions(tenant, event_id, event_type, contact_key, flow, outcome, reason, "
            "idempotency_key, decided_at) VALUES (:tenant, :event_id, :event_type, :contact_key, :flow, "
            ":outcome, :reason, :idempotency_key, :decided_at)"),
            [{"tenant": r.tenant, "event_id": r.event_id, "event_type": r.event_type,
              "contact_key": r.contact_key, "flow": r.flow, "outcome": r.outcome, "reason": r.reason,
              "idempotency_key": r.idempotency_key, "decided_at": r.decided_at} for r in rows])

    async def decisions_for(self, conn: AsyncConnection, tenant: str, contact_key: str, limit: int) -> list[dict]:
        rows = await conn.execute(text(
            "SELECT event_id, event_type, flow, outcome, reason, idempotency_key, decided_at FROM decisions "
            "WHERE tenant = :t AND contact_key = :c ORDER BY id DESC LIMIT :n"),
            {"t": tenant, "c": contact_key, "n": limit})
        return [dict(r._mapping) for r in rows]
