"""The report store on PostgreSQL (schema `reporting`): a few set-based statements per batch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reporting.domain.clicks import ClickSeen, first_click
from reporting.domain.gate import Deferrals
from reporting.domain.ledger import MessageLookup, MessageRef, Name
from reporting.domain.messages import Message, OrderPaid, Reply
from reporting.handlers import (
    ConcurrentWrite,
    EventRef,
    RecipientRef,
    RecipientWindow,
    ReportChanges,
)
from scrm_common.db.inbox import claim_events

SCHEMA = "reporting"

# Columns of a message row after its (tenant, message_key), with their SQL types; `Message` has a field
# of each name. effective_sent_at (Message.reply_from) and recipient are derived: what reply attribution looks at.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("message_id", "text"), ("idempotency_key", "text"), ("flow", "text"), ("account_id", "text"),
    ("category", "text"), ("phone", "text"), ("wa_id", "text"), ("platform", "boolean"),
    ("attempt_id", "text"), ("attempt_at", "timestamptz"), ("attempted_at", "timestamptz"),
    ("sent_at", "timestamptz"), ("delivered_at", "timestamptz"), ("read_at", "timestamptz"),
    ("failed_at", "timestamptz"), ("replied_at", "timestamptz"), ("deferrals", "text"), ("gate_state", "text"),
    ("gate_rule", "text"), ("gate_at", "timestamptz"), ("deferred_until", "timestamptz"))
_DERIVED: tuple[tuple[str, str], ...] = (("effective_sent_at", "timestamptz"), ("recipient", "text"))
_NAMES = [name for name, _ in _FIELDS]
_SELECT = ", ".join(["m.tenant", "m.message_key", *(f"m.{n}" for n in _NAMES)])

# Rows by key, idempotency key, or any wamid they are known by (first or latest attempt's, or the key).
_LOAD_MESSAGES = text(f"""
    WITH keys AS (SELECT * FROM unnest(CAST(:key_tenants AS text[]), CAST(:keys AS text[])) AS k(tenant, name)),
         idem AS (SELECT * FROM unnest(CAST(:idem_tenants AS text[]), CAST(:idems AS text[])) AS k(tenant, name)),
         wamids AS (SELECT * FROM unnest(CAST(:wamid_tenants AS text[]), CAST(:wamids AS text[])) AS k(tenant, name)),
         found AS (
           SELECT m.tenant, m.message_key FROM messages m JOIN keys k
             ON m.tenant = k.tenant AND m.message_key = k.name
           UNION SELECT m.tenant, m.message_key FROM messages m JOIN idem k
             ON m.tenant = k.tenant AND m.idempotency_key = k.name
           UNION SELECT m.tenant, m.message_key FROM messages m JOIN wamids k
             ON m.tenant = k.tenant AND m.message_key = k.name
           UNION SELECT m.tenant, m.message_key FROM messages m JOIN wamids k
             ON m.tenant = k.tenant AND m.message_id = k.name
           UNION SELECT m.tenant, m.message_key FROM messages m JOIN wamids k
             ON m.tenant = k.tenant AND m.attempt_id = k.name)
    SELECT {_SELECT}
    FROM messages m JOIN found f ON m.tenant = f.tenant AND m.message_key = f.message_key
    ORDER BY m.tenant, m.message_key
    FOR UPDATE OF m""")

_RECIPIENT_MESSAGES = text(f"""
    SELECT {_SELECT}
    FROM messages m
    JOIN unnest(CAST(:tenants AS text[]), CAST(:recipients AS text[]), CAST(:los AS timestamptz[]),
                CAST(:his AS timestamptz[])) AS w(tenant, recipient, lo, hi)
      ON m.tenant = w.tenant AND m.recipient = w.recipient AND m.effective_sent_at BETWEEN w.lo AND w.hi
    ORDER BY m.tenant, m.message_key
    FOR UPDATE OF m""")

_RECIPIENT_INBOUNDS = text("""
    SELECT i.tenant, i.recipient, i.event_id, i.received_at, i.context_message_id
    FROM inbound_messages i
    JOIN unnest(CAST(:tenants AS text[]), CAST(:recipients AS text[]), CAST(:los AS timestamptz[]),
                CAST(:his AS timestamptz[])) AS w(tenant, recipient, lo, hi)
      ON i.tenant = w.tenant AND i.recipient = w.recipient AND i.received_at BETWEEN w.lo AND w.hi""")

_REPLIES_NAMING = text("""
    SELECT i.tenant, i.recipient, i.event_id, i.received_at, i.context_message_id
    FROM inbound_messages i
    JOIN unnest(CAST(:tenants AS text[]), CAST(:wamids AS text[])) AS w(tenant, wamid)
      ON i.tenant = w.tenant AND i.context_message_id = w.wamid""")

_ALL = (("tenant", "text"), ("message_key", "text"), *_FIELDS, *_DERIVED)
_ROWS = (f"unnest({', '.join(f'CAST(:{n} AS {t}[])' for n, t in _ALL)}) "
         f"AS u({', '.join(n for n, _ in _ALL)})")

_INSERT_MESSAGES = text(f"""
    INSERT INTO messages ({', '.join(n for n, _ in _ALL)})
    SELECT * FROM {_ROWS}
    ON CONFLICT DO NOTHING
    RETURNING message_key""")

_UPDATE_MESSAGES = text(f"""
    UPDATE messages m SET {', '.join(f'{n} = u.{n}' for n, _ in (*_FIELDS, *_DERIVED))}, updated_at = now()
    FROM {_ROWS}
    WHERE m.tenant = u.tenant AND m.message_key = u.message_key""")

_DELETE_MESSAGES = text("""
    DELETE FROM messages m
    USING unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS d(tenant, message_key)
    WHERE m.tenant = d.tenant AND m.message_key = d.message_key""")

_INSERT_INBOUNDS = text("""
    INSERT INTO inbound_messages (tenant, event_id, recipient, phone, wa_id, received_at, context_message_id)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:event_ids AS text[]), CAST(:recipients AS text[]),
                         CAST(:phones AS text[]), CAST(:wa_ids AS text[]), CAST(:ats AS timestamptz[]),
                         CAST(:contexts AS text[]))
    ON CONFLICT DO NOTHING""")

_INSERT_ORDERS = text("""
    INSERT INTO orders (tenant, order_id, amount, currency, paid_at)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:order_ids AS text[]), CAST(:amounts AS numeric[]),
                         CAST(:currencies AS text[]), CAST(:paid_ats AS timestamptz[]))
    ON CONFLICT DO NOTHING
    RETURNING tenant, order_id""")

# A message's first click: new rows are returned (and counted); the others are locked and read to find
# an earlier click than the one recorded (reporting.domain.clicks).
_CLICK_ROWS = ("unnest(CAST(:tenants AS text[]), CAST(:keys AS text[]), CAST(:ats AS timestamptz[]), "
               "CAST(:flows AS text[])) AS c(tenant, idempotency_key, clicked_at, flow)")

_INSERT_CLICKS = text(f"""
    INSERT INTO clicked_messages (tenant, idempotency_key, clicked_at, flow)
    SELECT * FROM {_CLICK_ROWS}
    ON CONFLICT DO NOTHING
    RETURNING tenant, idempotency_key""")

_LOAD_CLICKS = text("""
    SELECT m.tenant, m.idempotency_key, m.clicked_at, m.flow
    FROM clicked_messages m
    JOIN unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS k(tenant, idempotency_key)
      ON m.tenant = k.tenant AND m.idempotency_key = k.idempotency_key
    ORDER BY m.tenant, m.idempotency_key
    FOR UPDATE OF m""")

_UPDATE_CLICKS = text(f"""
    UPDATE clicked_messages m SET clicked_at = c.clicked_at, flow = c.flow
    FROM {_CLICK_ROWS}
    WHERE m.tenant = c.tenant AND m.idempotency_key = c.idempotency_key""")

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

_ADD_GATE_COUNTS = text("""
    INSERT INTO gate_counts (tenant, day, flow, rule, metric, value)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:days AS date[]), CAST(:flows AS text[]),
                         CAST(:rules AS text[]), CAST(:metrics AS text[]), CAST(:values AS bigint[]))
    ON CONFLICT (tenant, day, flow, rule, metric) DO UPDATE SET value = gate_counts.value + EXCLUDED.value""")

_GATE_COUNTS = text("""
    SELECT day, NULLIF(flow, ''), rule, metric, value FROM gate_counts
    WHERE tenant = :tenant AND day BETWEEN :start AND :end AND value <> 0
      AND (CAST(:flow AS text) IS NULL OR flow = :flow)""")

_OVERVIEW_REVENUE = text("""
    SELECT day, NULLIF(flow, ''), currency, amount FROM daily_revenue
    WHERE tenant = :tenant AND day BETWEEN :start AND :end AND amount <> 0""")


def _deferrals_text(deferrals: Deferrals) -> str | None:
    """`{"R-S4": "2026-03-01T21:00:00+00:00", …}`, None when never deferred."""
    return json.dumps({rule: at.isoformat() for rule, at in deferrals}) if deferrals else None


def _deferrals(stored: str | None) -> Deferrals:
    return tuple(sorted((rule, datetime.fromisoformat(at)) for rule, at in json.loads(stored).items())) \
        if stored else ()


def _message(row: Any) -> tuple[MessageRef, Message]:
    values = dict(zip(_NAMES, row[2:], strict=True))
    values["deferrals"] = _deferrals(values["deferrals"])
    m = Message(key=row[1], **values)
    return (row[0], m.key), m


def _columns(rows: Sequence[tuple[str, Message]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {"tenant": [t for t, _ in rows], "message_key": [m.key for _, m in rows]}
    for name in _NAMES:
        out[name] = [getattr(m, name) for _, m in rows]
    out["deferrals"] = [_deferrals_text(m.deferrals) for _, m in rows]
    out["effective_sent_at"] = [m.reply_from for _, m in rows]
    out["recipient"] = [m.recipient for _, m in rows]
    return out


def _click_columns(clicks: Sequence[tuple[str, ClickSeen]]) -> dict[str, list[Any]]:
    return {"tenants": [t for t, _ in clicks], "keys": [c.idempotency_key for _, c in clicks],
            "ats": [c.at for _, c in clicks], "flows": [c.flow for _, c in clicks]}


def _replies(rows: Any) -> dict[RecipientRef, dict[str, Reply]]:
    out: dict[RecipientRef, dict[str, Reply]] = {}
    for tenant, recipient, event_id, at, context in rows:
        out.setdefault((tenant, recipient), {})[event_id] = Reply(at, context)
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

    async def messages(self, lookup: MessageLookup) -> dict[MessageRef, Message]:
        keys, idems, wamids = sorted(lookup.keys), sorted(lookup.idempotency_keys), sorted(lookup.wamids)
        result = await self._conn.execute(_LOAD_MESSAGES, {
            "key_tenants": [t for t, _ in keys], "keys": [k for _, k in keys],
            "idem_tenants": [t for t, _ in idems], "idems": [k for _, k in idems],
            "wamid_tenants": [t for t, _ in wamids], "wamids": [k for _, k in wamids]})
        return dict(_message(row) for row in result)

    async def recipient_history(self, windows: Sequence[RecipientWindow]
                                ) -> tuple[dict[MessageRef, Message], dict[RecipientRef, dict[str, Reply]]]:
        params = _windows(windows)
        messages = dict(_message(row) for row in await self._conn.execute(_RECIPIENT_MESSAGES, params))
        return messages, _replies(await self._conn.execute(_RECIPIENT_INBOUNDS, params))

    async def replies_naming(self, wamids: set[Name]) -> dict[RecipientRef, dict[str, Reply]]:
        ordered = sorted(wamids)
        return _replies(await self._conn.execute(_REPLIES_NAMING, {"tenants": [t for t, _ in ordered],
                                                                   "wamids": [w for _, w in ordered]}))

    async def add_orders(self, orders: Sequence[tuple[str, OrderPaid]]) -> list[tuple[str, OrderPaid]]:
        result = await self._conn.execute(_INSERT_ORDERS, {
            "tenants": [t for t, _ in orders], "order_ids": [o.order_id for _, o in orders],
            "amounts": [o.amount for _, o in orders], "currencies": [o.currency for _, o in orders],
            "paid_ats": [o.paid_at for _, o in orders]})
        new = {(row[0], row[1]) for row in result}
        return [(t, o) for t, o in orders if (t, o.order_id) in new]

    async def add_clicks(self, clicks: Sequence[tuple[str, ClickSeen]]
                         ) -> list[tuple[str, ClickSeen | None, ClickSeen]]:
        ordered = sorted(clicks, key=lambda tc: (tc[0], tc[1].idempotency_key))  # one lock order for all
        new = {(row[0], row[1]) for row in await self._conn.execute(_INSERT_CLICKS, _click_columns(ordered))}
        changed: list[tuple[str, ClickSeen | None, ClickSeen]] = [(t, None, c) for t, c in ordered
                                                                   if (t, c.idempotency_key) in new]
        known = [(t, c) for t, c in ordered if (t, c.idempotency_key) not in new]
        if not known:
            return changed
        stored = {(row[0], row[1]): ClickSeen(idempotency_key=row[1], at=row[2], flow=row[3])
                  for row in await self._conn.execute(_LOAD_CLICKS, {"tenants": [t for t, _ in known],
                                                                     "keys": [c.idempotency_key for _, c in known]})}
        earlier = [(t, before, c) for t, c in known
                   if first_click(before := stored[(t, c.idempotency_key)], c) is c]  # an earlier first click
        if earlier:
            await self._conn.execute(_UPDATE_CLICKS, _click_columns([(t, c) for t, _, c in earlier]))
        return changed + earlier

    async def save(self, changes: ReportChanges) -> None:
        if changes.deleted:
            await self._conn.execute(_DELETE_MESSAGES, {"tenants": [t for t, _ in changes.deleted],
                                                        "keys": [k for _, k in changes.deleted]})
        if changes.inserted:
            created = (await self._conn.execute(_INSERT_MESSAGES, _columns(changes.inserted))).all()
            if len(created) != len(changes.inserted):
                raise ConcurrentWrite("a message was recorded concurrently")
        if changes.updated:
            try:
                await self._conn.execute(_UPDATE_MESSAGES, _columns(changes.updated))
            except IntegrityError as exc:  # another instance gave a message this idempotency key first
                raise ConcurrentWrite("a message was claimed concurrently") from exc
        if changes.inbounds:
            rows = changes.inbounds
            await self._conn.execute(_INSERT_INBOUNDS, {
                "tenants": [i.tenant for i in rows], "event_ids": [i.seen.event_id for i in rows],
                "recipients": [i.seen.recipient for i in rows], "phones": [i.seen.phone for i in rows],
                "wa_ids": [i.seen.wa_id for i in rows], "ats": [i.seen.at for i in rows],
                "contexts": [i.seen.context_message_id for i in rows]})
        if changes.counts:
            cells = sorted(changes.counts.items(), key=lambda kv: (kv[0][0], kv[0][1][0], kv[0][1][1] or "",
                                                                    kv[0][1][2].value))
            await self._conn.execute(_ADD_COUNTS, {
                "tenants": [t for (t, _), _ in cells], "days": [c[0] for (_, c), _ in cells],
                "flows": [c[1] or "" for (_, c), _ in cells], "metrics": [c[2].value for (_, c), _ in cells],
                "values": [n for _, n in cells]})
        if changes.gate_counts:
            gate = sorted(changes.gate_counts.items(), key=lambda kv: (kv[0][0], kv[0][1][0], kv[0][1][1] or "",
                                                                       kv[0][1][2], kv[0][1][3].value))
            await self._conn.execute(_ADD_GATE_COUNTS, {
                "tenants": [t for (t, _), _ in gate], "days": [c[0] for (_, c), _ in gate],
                "flows": [c[1] or "" for (_, c), _ in gate], "rules": [c[2] for (_, c), _ in gate],
                "metrics": [c[3].value for (_, c), _ in gate], "values": [n for _, n in gate]})
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

    async def gate_rows(self, tenant: str, start: date, end: date, flow: str | None
                        ) -> list[tuple[date, str | None, str, str, int]]:
        params = {"tenant": tenant, "start": start, "end": end, "flow": flow}
        async with self._engine.connect() as conn:
            return [(r[0], r[1], r[2], r[3], int(r[4])) for r in await conn.execute(_GATE_COUNTS, params)]

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True
