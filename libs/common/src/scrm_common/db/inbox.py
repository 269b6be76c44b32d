"""The inbox: an event is applied once per tenant + event_id, recorded in the effect's own transaction.

Each consuming service keeps an `inbox(tenant, event_id, processed_at)` table in its schema; a
primary-key conflict means "already done".
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

_CLAIM = text(
    "INSERT INTO inbox(tenant, event_id) "
    "SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:event_ids AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING tenant, event_id")


async def claim_events(conn: AsyncConnection, events: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Record (tenant, event_id) pairs; return those seen for the first time (one round trip)."""
    if not events:
        return set()
    result = await conn.execute(_CLAIM, {"tenants": [e[0] for e in events], "event_ids": [e[1] for e in events]})
    return {(row[0], row[1]) for row in result}
