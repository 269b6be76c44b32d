"""Failed-message lines in the decision log (`decisions.status_event`, migration 006): one per failed status,
on the person the message's Send was decided for (`sends`, by tenant and idempotency key)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_engine.domain.outcomes import OUTCOME, STATUS_TYPE, FailedMessage

_SENDS = text(
    "SELECT s.tenant, s.idempotency_key, s.contact_key, s.flow FROM sends s "
    "JOIN unnest(CAST(:t AS text[]), CAST(:k AS text[])) AS q(t, k) ON s.tenant = q.t AND s.idempotency_key = q.k")

_INSERT = text(
    "INSERT INTO decisions(tenant, event_id, event_type, contact_key, flow, outcome, reason, idempotency_key, "
    "decided_at, status_event) "
    "SELECT t, e, :event_type, c, f, :outcome, r, k, a, e FROM unnest(CAST(:t AS text[]), CAST(:e AS text[]), "
    "CAST(:c AS text[]), CAST(:f AS text[]), CAST(:r AS text[]), CAST(:k AS text[]), CAST(:a AS timestamptz[])) "
    "AS q(t, e, c, f, r, k, a) "
    "ON CONFLICT (tenant, status_event) WHERE status_event IS NOT NULL DO NOTHING RETURNING id")


async def decided_sends(conn: AsyncConnection, keys: Iterable[tuple[str, str]]
                        ) -> dict[tuple[str, str], tuple[str, str]]:
    """(tenant, idempotency key) → (person, flow) of each Send decided here; keys never decided are absent."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    rows = await conn.execute(_SENDS, {"t": [k[0] for k in keys], "k": [k[1] for k in keys]})
    return {(r.tenant, r.idempotency_key): (r.contact_key, r.flow) for r in rows}


async def record_failures(conn: AsyncConnection, lines: Sequence[tuple[FailedMessage, str, str]]) -> int:
    """Record each (failure, person, flow) in the person's story; return how many were new (a status told
    before — the same tenant and event id — is not told again)."""
    if not lines:
        return 0
    result = await conn.execute(_INSERT, {
        "event_type": STATUS_TYPE, "outcome": OUTCOME,
        "t": [m.tenant for m, _, _ in lines], "e": [m.event_id for m, _, _ in lines],
        "c": [person for _, person, _ in lines], "f": [flow for _, _, flow in lines],
        "r": [m.reason for m, _, _ in lines], "k": [m.idempotency_key for m, _, _ in lines],
        "a": [m.at for m, _, _ in lines]})
    return len(result.fetchall())
