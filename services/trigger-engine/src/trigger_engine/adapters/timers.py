"""The timer store (table `timers`, migration 008): what `Schedule` keeps, `Cancel` cancels, the timer loop claims.

Every method takes the caller's connection (one transaction: an event batch's or a timer pass's). Times are
aware UTC. Locking (see `claim_due`): a timer pass holds, when it writes, only timer rows of persons whose
person lock it holds — the same lock an event batch takes (`EngineRepository.lock_persons`) before it writes a
person's timers — so a pass and a batch never wait on each other in a cycle, and two passes never either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_engine.domain.timers import Timer

_COLUMNS = ("tenant, key, flow, contact_key, event_id, event_occurred_at, correlation_id, due_at, expires_at, "
            "payload")


@dataclass(frozen=True, slots=True)
class TimerRow:
    """A timer to keep (a `Schedule` decision of an event batch or a timer pass) with its cause: the event that
    scheduled it (`event_id`, `event_occurred_at`, `correlation_id`), named by whatever it decides later."""

    tenant: str
    key: str
    flow: str
    contact_key: str
    event_id: str
    due_at: datetime
    expires_at: datetime | None
    payload: Mapping[str, object]
    event_occurred_at: datetime | None = None
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelRow:
    """Cancel `tenant`'s pending timers of person `contact_key` whose key is `key` (or starts with it when
    `prefix`), recording `reason`."""

    tenant: str
    contact_key: str
    key: str
    prefix: bool
    reason: str


@dataclass(frozen=True, slots=True)
class ClaimedTimer:
    """A due timer a pass holds (its row and its person's lock): the domain's `timer`, and its cause's
    `event_occurred_at` (None: not recorded, e.g. a row written by hand) and `correlation_id`."""

    timer: Timer
    event_occurred_at: datetime | None
    correlation_id: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """What `claim_due` got: `timers` to fire now, and how many due timers it left pending because their person
    was locked elsewhere (`skipped`)."""

    timers: list[ClaimedTimer]
    skipped: int


class TimerRepository:
    """SQL of the timer store; one statement per call unless said otherwise."""

    async def schedule(self, conn: AsyncConnection, rows: Sequence[TimerRow], now: datetime) -> None:
        """Keep each timer pending: a key kept before (whatever its state) is re-armed with the new due time,
        expiry, payload, person and cause. Of several rows with one (tenant, key) the last wins."""
        latest = list({(r.tenant, r.key): r for r in rows}.values())
        if not latest:
            return
        await conn.execute(text(
            f"INSERT INTO timers({_COLUMNS}, state, reason, created_at, settled_at) "
            "SELECT t, k, f, c, e, eo, cid, d, x, CAST(p AS jsonb), 'pending', NULL, :now, NULL FROM unnest("
            "CAST(:t AS text[]), CAST(:k AS text[]), CAST(:f AS text[]), CAST(:c AS text[]), CAST(:e AS text[]), "
            "CAST(:eo AS timestamptz[]), CAST(:cid AS text[]), CAST(:d AS timestamptz[]), "
            "CAST(:x AS timestamptz[]), CAST(:p AS text[])) AS q(t, k, f, c, e, eo, cid, d, x, p) "
            "ON CONFLICT (tenant, key) DO UPDATE SET flow = EXCLUDED.flow, contact_key = EXCLUDED.contact_key, "
            "event_id = EXCLUDED.event_id, event_occurred_at = EXCLUDED.event_occurred_at, "
            "correlation_id = EXCLUDED.correlation_id, due_at = EXCLUDED.due_at, expires_at = EXCLUDED.expires_at, "
            "payload = EXCLUDED.payload, state = 'pending', reason = NULL, created_at = EXCLUDED.created_at, "
            "settled_at = NULL"),
            {"t": [r.tenant for r in latest], "k": [r.key for r in latest], "f": [r.flow for r in latest],
             "c": [r.contact_key for r in latest], "e": [r.event_id for r in latest],
             "eo": [r.event_occurred_at for r in latest], "cid": [r.correlation_id for r in latest],
             "d": [r.due_at for r in latest], "x": [r.expires_at for r in latest],
             "p": [json.dumps(dict(r.payload), sort_keys=True, default=str) for r in latest], "now": now})

    async def cancel(self, conn: AsyncConnection, cancels: Sequence[CancelRow], now: datetime
                     ) -> list[tuple[CancelRow, str]]:
        """Cancel the pending timers each row names (state cancelled, its reason, settled now); return each timer
        cancelled as (the row that named it, its key). Timers already fired, expired or cancelled stay as they
        are."""
        if not cancels:
            return []
        result = await conn.execute(text(
            "UPDATE timers SET state = 'cancelled', reason = q.r, settled_at = :now FROM unnest("
            "CAST(:t AS text[]), CAST(:c AS text[]), CAST(:k AS text[]), CAST(:p AS boolean[]), "
            "CAST(:r AS text[])) AS q(t, c, k, p, r) "
            "WHERE timers.tenant = q.t AND timers.contact_key = q.c AND timers.state = 'pending' "
            "AND CASE WHEN q.p THEN starts_with(timers.key, q.k) ELSE timers.key = q.k END "
            "RETURNING q.t AS named_tenant, q.c AS named_contact, q.k AS named_key, q.p AS named_prefix, "
            "q.r AS named_reason, timers.key AS cancelled"),
            {"t": [c.tenant for c in cancels], "c": [c.contact_key for c in cancels],
             "k": [c.key for c in cancels], "p": [c.prefix for c in cancels], "r": [c.reason for c in cancels],
             "now": now})
        return [(CancelRow(r.named_tenant, r.named_contact, r.named_key, r.named_prefix, r.named_reason), r.cancelled)
                for r in result]

    async def merge_people(self, conn: AsyncConnection, merges: Sequence[tuple[str, str, str]]) -> None:
        """Apply (tenant, absorbed, person) in order: the absorbed person's timers are the person's (the caller
        holds both persons' locks)."""
        for tenant, absorbed, person in merges:
            await conn.execute(text(
                "UPDATE timers SET contact_key = :new WHERE tenant = :t AND contact_key = :old"),
                {"t": tenant, "old": absorbed, "new": person})

    async def claim_due(self, conn: AsyncConnection, now: datetime, limit: int) -> Claim:
        """Claim up to `limit` pending timers due at or before `now`, earliest first, with their persons' locks.

        Rows are claimed `FOR UPDATE SKIP LOCKED` (another pass's rows are skipped) in a savepoint; each
        timer's person lock (`hashtextextended(tenant||'|person:'||person, 0)`, as `EngineRepository.
        lock_persons`) is taken with `pg_try_advisory_xact_lock`, never waited for: an event batch holds
        person locks and may then wait on timer rows. When some person is locked elsewhere, the savepoint is
        rolled back (releasing every row it locked) and only the rows of the persons this pass got are claimed
        again — so the pass never holds a row of a person it does not hold, and whatever it writes later only
        waits on rows of its own persons. Timers left out stay pending for a next pass (`Claim.skipped`).
        Three statements, five when some person was locked elsewhere.
        """
        savepoint = await conn.begin_nested()
        rows = (await conn.execute(text(
            f"SELECT {_COLUMNS} FROM timers WHERE state = 'pending' AND due_at <= :now "
            "ORDER BY due_at LIMIT :n FOR UPDATE SKIP LOCKED"), {"now": now, "n": limit})).all()
        persons = {(r.tenant, r.contact_key) for r in rows}
        got = await self._try_lock_persons(conn, persons)
        if got == persons:
            await savepoint.commit()
            return Claim([_claimed(r) for r in rows], 0)
        await savepoint.rollback()
        got = await self._try_lock_persons(conn, got)  # again, in the pass's own transaction
        keys = [(r.tenant, r.key) for r in rows if (r.tenant, r.contact_key) in got]
        if not keys:
            return Claim([], len(rows))
        again = (await conn.execute(text(
            f"SELECT {_COLUMNS} FROM timers WHERE (tenant, key) IN (SELECT * FROM unnest("
            "CAST(:t AS text[]), CAST(:k AS text[]))) AND state = 'pending' AND due_at <= :now "
            "ORDER BY due_at FOR UPDATE SKIP LOCKED"),
            {"t": [k[0] for k in keys], "k": [k[1] for k in keys], "now": now})).all()
        held = [r for r in again if (r.tenant, r.contact_key) in got]  # a person moved meanwhile: next pass
        return Claim([_claimed(r) for r in held], len(rows) - len(held))

    async def _try_lock_persons(self, conn: AsyncConnection,
                                persons: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Take each (tenant, person) lock that is free right now; return those taken (held to the end of the
        transaction)."""
        persons = sorted(set(persons))
        if not persons:
            return set()
        result = await conn.execute(text(
            "SELECT tenant, person FROM unnest(CAST(:t AS text[]), CAST(:p AS text[])) AS q(tenant, person) "
            "WHERE pg_try_advisory_xact_lock(hashtextextended(q.tenant || '|person:' || q.person, 0))"),
            {"t": [p[0] for p in persons], "p": [p[1] for p in persons]})
        return {(r.tenant, r.person) for r in result}

    async def settle(self, conn: AsyncConnection, settled: Sequence[tuple[str, str, str, str | None]],
                     now: datetime) -> None:
        """Settle claimed timers: (tenant, key, state fired|expired, reason or None), settled now."""
        if not settled:
            return
        await conn.execute(text(
            "UPDATE timers SET state = q.s, reason = q.r, settled_at = :now FROM unnest(CAST(:t AS text[]), "
            "CAST(:k AS text[]), CAST(:s AS text[]), CAST(:r AS text[])) AS q(t, k, s, r) "
            "WHERE timers.tenant = q.t AND timers.key = q.k"),
            {"t": [s[0] for s in settled], "k": [s[1] for s in settled], "s": [s[2] for s in settled],
             "r": [s[3] for s in settled], "now": now})

    async def earliest_due(self, conn: AsyncConnection) -> datetime | None:
        """The due time of the earliest pending timer (None: none pending)."""
        return (await conn.execute(text(
            "SELECT min(due_at) FROM timers WHERE state = 'pending'"))).scalar()


def _claimed(row: Row[tuple[object, ...]]) -> ClaimedTimer:
    payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload or "{}")
    return ClaimedTimer(
        Timer(tenant=row.tenant, key=row.key, flow=row.flow, contact_key=row.contact_key, due_at=row.due_at,
              event_id=row.event_id, expires_at=row.expires_at, payload=payload),
        row.event_occurred_at, row.correlation_id)
