"""The report store on PostgreSQL (schema `reporting`): a few set-based statements per batch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reporting.domain.messages import Message, OrderPaid
from reporting.handlers import (
    ConcurrentWrite,
    EventRef,
    MessageRef,
    RecipientRef,
    RecipientWindow,
    ReportChanges,
)
from scrm_common.db.inbox import claim_events

SCHEMA = "reporting"

_MESSAGE_COLUMNS = ("message_key, message_id, idempotency_key, flow, account_id, category, phone, wa_id, platform, "
                    "sent_at, delivered_at, read_at, failed_at, replied_at")

_LOAD_MESSAGES = text(f"""
    SELECT m.tenant, {', '.join('m.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))}
    FROM messages m
    JOIN unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS w(tenant, message_key)
      ON m.tenant = w.tenant AND m.message_key = w.message_key
    ORDER BY m.tenant, m.message_key
    FOR UPDATE OF m""")

_RECIPIENT_MESSAGES = text(f"""
    SELECT m.tenant, {', '.join('m.' + c.strip() for c in _MESSAGE_COLUMNS.split(','))}
    FROM messages m
    JOIN unnest(CAST(:tenants AS text[]), CAST(:recipients AS text[]), CAST(:los AS timestamptz[]),
                CAST(:his AS timestamptz[])) AS w(tenant, recipient, lo, hi)
      ON m.tenant = w.tenant AND m.recipient = w.recipient AND m.effective_sent_at BETWEEN w.lo AND w.hi
    ORDER BY m.tenant, m.message_key
    FOR UPDATE OF m""")

_RECIPIENT_INBOUNDS = text("""
    SELECT i.tenant, i.recipient, i.event_id, i.received_at
    FROM inbound_messages i
    JOIN unnest(CAST(:tenants AS text[]), CAST(:recipients AS text[]), CAST(:los AS timestamptz[]),
                CAST(:his AS timestamptz[])) AS w(tenant, recipient, lo, hi)
      ON i.tenant = w.tenant AND i.recipient = w.recipient AND i.received_at BETWEEN w.lo AND w.hi""")

_ROWS = """unnest(CAST(:tenant AS text[]), CAST(:message_key AS text[]), CAST(:message_id AS text[]),
                  CAST(:idempotency_key AS text[]), CAST(:flow AS text[]), CAST(:account_id AS text[]),
                  CAST(:category AS text[]), CAST(:phone AS text[]), CAST(:wa_id AS text[]),
                  CAST(:platform AS boolean[]), CAST(:sent_at AS timestamptz[]),
                  CAST(:delivered_at AS timestamptz[]), CAST(:read_at AS timestamptz[]),
                  CAST(:failed_at AS timestamptz[]), CAST(:replied_at AS timestamptz[]),
                  CAST(:effective_sent_at AS timestamptz[]), CAST(:recipient AS text[]))
           AS u(tenant, message_key, message_id, idempotency_key, flow, account_id, category, phone, wa_id,
                platform, sent_at, delivered_at, read_at, failed_at, replied_at, effective_sent_at, recipient)"""

_INSERT_MESSAGES = text(f"""
    INSERT INTO messages (tenant, {_MESSAGE_COLUMNS}, effective_sent_at, recipient)
    SELECT * FROM {_ROWS}
    ON CONFLICT DO NOTHING
    RETURNING message_key""")

_UPDATE_MESSAGES = text(f"""
    UPDATE messages m SET message_id = u.message_id, idempotency_key = u.idempotency_key, flow = u.flow,
           account_id = u.account_id, category = u.category, phone = u.phone, wa_id = u.wa_id,
           platform = u.platform, sent_at = u.sent_at, delivered_at = u.delivered_at, read_at = u.read_at,
           failed_at = u.failed_at, replied_at = u.replied_at, effective_sent_at = u.effective_sent_at,
           recipient = u.recipient, updated_at = now()
    FROM {_ROWS}
    WHERE m.tenant = u.tenant AND m.message_key = u.message_key""")

_INSERT_INBOUNDS = text("""
    INSERT INTO inbound_messages (tenant, event_id, recipient, phone, wa_id, received_at)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:event_ids AS text[]), CAST(:recipients AS text[]),
                         CAST(:phones AS text[]), CAST(:wa_ids AS text[]), CAST(:ats AS timestamptz[]))
    ON CONFLICT DO NOTHING""")

_INSERT_ORDERS = text("""
    INSERT INTO orders (tenant, order_id, amount, currency, paid_at)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:order_ids AS text[]), CAST(:amounts AS numeric[]),
                         CAST(:currencies AS text[]), CAST(:paid_ats AS timestamptz[]))
    ON CONFLICT DO NOTHING
    RETURNING tenant, order_id""")

_ADD_COUNTS = text("""
    INSERT INTO daily_counts (tenant, day, flow, metric, value)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:days AS date[]), CAST(:flows AS text[]),
                         CAST(:metrics AS text[]), CAST(:values AS bigint[]))
    ON CONFLICT (tenant, day, flow, metric) DO UPDATE SET value = daily_counts.value + EXCLUDED.value""")

_ADD_REVENUE = text("""
    INSERT INTO daily_revenue (tenant, day, flow, currency, amount)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:days AS date[]), CAST(:flows AS text[]),
                         CAST(:currencies AS text[]), CAST(:amounts AS numeric[]))
    ON CONFLICT (tenant, day, flow, currency) DO UPDATE SET amount = daily_revenue.amount + EXCLUDED.amount""")

_OVERVIEW_COUNTS = text("""
    SELECT day, NULLIF(flow, ''), metric, value FROM daily_counts
    WHERE tenant = :tenant AND day BETWEEN :start AND :end AND value <> 0""")

_OVERVIEW_REVENUE = text("""
    SELECT day, NULLIF(flow, ''), currency, amount FROM daily_revenue
    WHERE tenant = :tenant AND day BETWEEN :start AND :end AND amount <> 0""")


_FIELDS = ("message_id", "idempotency_key", "flow", "account_id", "category", "phone", "wa_id", "platform",
           "sent_at", "delivered_at", "read_at", "failed_at", "replied_at")


def _message(row: Any) -> tuple[MessageRef, Message]:
    m = Message(key=row[1], **dict(zip(_FIELDS, row[2:], strict=True)))
    return (row[0], m.key), m


def _columns(rows: Sequence[tuple[str, Message]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"tenant": [t for t, _ in rows], "message_key": [m.key for _, m in rows]}
    for name in _FIELDS:
        out[name] = [getattr(m, name) for _, m in rows]
    out["effective_sent_at"] = [m.sent_on for _, m in rows]
    out["recipient"] = [m.recipient for _, m in rows]
    return out


def _windows(windows: Sequence[RecipientWindow]) -> dict[str, list[Any]]:
    return {"tenants": [w.tenant for w in windows], "recipients": [w.recipient for w in windows],
            "los": [w.lo for w in windows], "his": [w.hi for w in windows]}


class PostgresReportUnit:
    """One transaction on the report tables."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim(self, events: Sequence[EventRef]) -> set[EventRef]:
        return await claim_events(self._conn, events)

    async def messages(self, refs: set[MessageRef]) -> dict[MessageRef, Message]:
        ordered = sorted(refs)
        result = await self._conn.execute(_LOAD_MESSAGES, {"tenants": [r[0] for r in ordered],
                                                           "keys": [r[1] for r in ordered]})
        return dict(_message(row) for row in result)

    async def recipient_history(self, windows: Sequence[RecipientWindow]
                                ) -> tuple[dict[MessageRef, Message], dict[RecipientRef, dict[str, datetime]]]:
        params = _windows(windows)
        messages = dict(_message(row) for row in await self._conn.execute(_RECIPIENT_MESSAGES, params))
        inbounds: dict[RecipientRef, dict[str, datetime]] = {}
        for tenant, recipient, event_id, at in await self._conn.execute(_RECIPIENT_INBOUNDS, params):
            inbounds.setdefault((tenant, recipient), {})[event_id] = at
        return messages, inbounds

    async def add_orders(self, orders: Sequence[tuple[str, OrderPaid]]) -> list[tuple[str, OrderPaid]]:
        result = await self._conn.execute(_INSERT_ORDERS, {
            "tenants": [t for t, _ in orders], "order_ids": [o.order_id for _, o in orders],
            "amounts": [o.amount for _, o in orders], "currencies": [o.currency for _, o in orders],
            "paid_ats": [o.paid_at for _, o in orders]})
        new = {(row[0], row[1]) for row in result}
        return [(t, o) for t, o in orders if (t, o.order_id) in new]

    async def save(self, changes: ReportChanges) -> None:
        if changes.inserted:
            created = (await self._conn.execute(_INSERT_MESSAGES, _columns(changes.inserted))).all()
            if len(created) != len(changes.inserted):
                raise ConcurrentWrite("a message was recorded concurrently")
        if changes.updated:
            await self._conn.execute(_UPDATE_MESSAGES, _columns(changes.updated))
        if changes.inbounds:
            rows = changes.inbounds
            await self._conn.execute(_INSERT_INBOUNDS, {
                "tenants": [i.tenant for i in rows], "event_ids": [i.seen.event_id for i in rows],
                "recipients": [i.seen.recipient for i in rows], "phones": [i.seen.phone for i in rows],
                "wa_ids": [i.seen.wa_id for i in rows], "ats": [i.seen.at for i in rows]})
        if changes.counts:
            cells = sorted(changes.counts.items(), key=lambda kv: (kv[0][0], kv[0][1][0], kv[0][1][1] or "",
                                                                    kv[0][1][2].value))
            await self._conn.execute(_ADD_COUNTS, {
                "tenants": [t for (t, _), _ in cells], "days": [c[0] for (_, c), _ in cells],
                "flows": [c[1] or "" for (_, c), _ in cells], "metrics": [c[2].value for (_, c), _ in cells],
                "values": [n for _, n in cells]})
        if changes.revenue:
            revenue = sorted(changes.revenue.items(), key=lambda kv: (kv[0][0], kv[0][1][0], kv[0][1][1] or "",
                                                                       kv[0][1][2]))
            await self._conn.execute(_ADD_REVENUE, {
                "tenants": [t for (t, _), _ in revenue], "days": [c[0] for (_, c), _ in revenue],
                "flows": [c[1] or "" for (_, c), _ in revenue], "currencies": [c[2] for (_, c), _ in revenue],
                "amounts": [a for _, a in revenue]})


class PostgresReportStore:
    """Report facts and aggregates in the `reporting` schema."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[PostgresReportUnit]:
        async with self._engine.begin() as conn:
            yield PostgresReportUnit(conn)

    async def overview_rows(self, tenant: str, start: date, end: date) -> tuple[
            list[tuple[date, str | None, str, int]], list[tuple[date, str | None, str, Decimal]]]:
        params = {"tenant": tenant, "start": start, "end": end}
        async with self._engine.connect() as conn:
            counts = [(r[0], r[1], r[2], int(r[3])) for r in await conn.execute(_OVERVIEW_COUNTS, params)]
            revenue = [(r[0], r[1], r[2], Decimal(r[3])) for r in await conn.execute(_OVERVIEW_REVENUE, params)]
        return counts, revenue

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True
