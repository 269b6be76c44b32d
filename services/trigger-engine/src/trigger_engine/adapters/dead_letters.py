"""Dead-letter lines in the decision log (`decisions.dead_letter`, migration 004): one per dead letter."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_engine.domain.dead_letters import FLOW, OUTCOME, DeadLetterLine

_INSERT = text(
    "INSERT INTO decisions(tenant, event_id, event_type, contact_key, flow, outcome, reason, idempotency_key, "
    "decided_at, dead_letter) VALUES (:tenant, :event_id, :event_type, :contact_key, :flow, :outcome, :reason, "
    "NULL, :decided_at, :dead_letter) "
    "ON CONFLICT (tenant, dead_letter) WHERE dead_letter IS NOT NULL DO NOTHING RETURNING id")


async def record_dead_letter(conn: AsyncConnection, line: DeadLetterLine, person: str) -> bool:
    """Record `line` in `person`'s story; False when it was recorded before (same dead letter)."""
    result = await conn.execute(_INSERT, {
        "tenant": line.tenant, "event_id": line.event_id, "event_type": line.event_type, "contact_key": person,
        "flow": FLOW, "outcome": OUTCOME, "reason": line.reason, "decided_at": line.at, "dead_letter": line.mark})
    return result.first() is not None
