"""The engine's tables: inbox, contact profiles and their aliases, send reservations, decision log, outbox."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

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

    async def lock_aliases(self, conn: AsyncConnection, keys: Iterable[tuple[str, str]]) -> None:
        """Hold a transaction lock on each (tenant, alias) a batch resolves or records, so two batches
        naming one new person (a guest id and a customer id with one phone) create it once: the
        second waits, then finds the first's aliases. Taken in one order everywhere (no deadlock)."""
        names = sorted({f"{tenant}|{alias}" for tenant, alias in keys})
        if not names:
            return
        await conn.execute(text(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtextextended(n, 0) AS h "
            "FROM unnest(CAST(:n AS text[])) AS n ORDER BY 1) AS q"), {"n": names})

    async def lock_persons(self, conn: AsyncConnection, persons: Iterable[tuple[str, str]]) -> None:
        """Hold a transaction lock on each (tenant, person): a merge rewrites all of a person's aliases
        and its profile, so whoever reads or writes them holds it (see `EventHandler`). Taken after the
        alias locks; two batches merging the same persons can still deadlock, which PostgreSQL breaks
        and the consumer retries as a transient failure."""
        await self.lock_aliases(conn, ((tenant, f"person:{person}") for tenant, person in persons))

    async def load_aliases(
        self, conn: AsyncConnection, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """The person of each known (tenant, alias)."""
        keys = list(keys)
        if not keys:
            return {}
        rows = await conn.execute(text(
            "SELECT a.tenant, a.alias, a.person FROM contact_aliases a "
            "JOIN unnest(CAST(:t AS text[]), CAST(:a AS text[])) AS q(tenant, alias) "
            "ON a.tenant = q.tenant AND a.alias = q.alias"),
            {"t": [k[0] for k in keys], "a": [k[1] for k in keys]})
        return {(r.tenant, r.alias): r.person for r in rows}

    async def save_aliases(self, conn: AsyncConnection, aliases: dict[tuple[str, str], str], now: datetime) -> None:
        """Record (tenant, alias) → person, moving an alias that belonged to someone else."""
        if not aliases:
            return
        await conn.execute(text(
            "INSERT INTO contact_aliases(tenant, alias, person, updated_at) "
            "SELECT t, a, p, :now FROM unnest(CAST(:t AS text[]), CAST(:a AS text[]), CAST(:p AS text[])) "
            "AS q(t, a, p) ON CONFLICT (tenant, alias) DO UPDATE SET person = EXCLUDED.person, "
            "updated_at = EXCLUDED.updated_at WHERE contact_aliases.person <> EXCLUDED.person"),
            {"t": [k[0] for k in aliases], "a": [k[1] for k in aliases], "p": list(aliases.values()), "now": now})

    async def merge_people(self, conn: AsyncConnection, merges: Sequence[tuple[str, str, str]]) -> None:
        """Apply (tenant, absorbed, person) in order: the absorbed person's aliases, sends and decisions
        become the person's, and the absorbed person's profile row goes (it was merged in memory)."""
        for tenant, absorbed, person in merges:
            params = {"t": tenant, "old": absorbed, "new": person}
            await conn.execute(text(
                "UPDATE contact_aliases SET person = :new WHERE tenant = :t AND person = :old"), params)
            await conn.execute(text(
                "UPDATE sends SET contact_key = :new WHERE tenant = :t AND contact_key = :old"), params)
            await conn.execute(text(
                "UPDATE decisions SET contact_key = :new WHERE tenant = :t AND contact_key = :old"), params)
            await conn.execute(text("DELETE FROM contacts WHERE tenant = :t AND contact_key = :old"), params)
            await conn.execute(text("DELETE FROM cart_skus WHERE tenant = :t AND contact_key = :old"), params)

    async def carry_sends(self, conn: AsyncConnection, moves: dict[tuple[str, str], str]) -> None:
        """(tenant, idempotency key) → key: a message reserved under the first key is reserved under the
        second too (an absorbed person's once-per-person messages count for the person it merged into)."""
        if not moves:
            return
        await conn.execute(text(
            "INSERT INTO sends(tenant, idempotency_key, flow, contact_key, event_id, decided_at) "
            "SELECT s.tenant, q.new, s.flow, s.contact_key, s.event_id, s.decided_at FROM sends s "
            "JOIN unnest(CAST(:t AS text[]), CAST(:o AS text[]), CAST(:n AS text[])) AS q(t, old, new) "
            "ON s.tenant = q.t AND s.idempotency_key = q.old ON CONFLICT DO NOTHING"),
            {"t": [k[0] for k in moves], "o": [k[1] for k in moves], "n": list(moves.values())})

    async def reserved_keys(
        self, conn: AsyncConnection, wanted: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], list[str]]:
        """(tenant, person, flow) → the idempotency keys of the sends reserved for that person and flow, oldest
        reservation first (a merged person's sends are its person's: `merge_people`). One statement."""
        wanted = sorted(set(wanted))
        if not wanted:
            return {}
        rows = await conn.execute(text(
            "SELECT s.tenant, s.contact_key, s.flow, s.idempotency_key FROM sends s "
            "JOIN unnest(CAST(:t AS text[]), CAST(:c AS text[]), CAST(:f AS text[])) AS q(t, c, f) "
            "ON s.tenant = q.t AND s.contact_key = q.c AND s.flow = q.f ORDER BY s.decided_at, s.idempotency_key"),
            {"t": [w[0] for w in wanted], "c": [w[1] for w in wanted], "f": [w[2] for w in wanted]})
        found: dict[tuple[str, str, str], list[str]] = {}
        for r in rows:
            found.setdefault((r.tenant, r.contact_key, r.flow), []).append(r.idempotency_key)
        return found

    async def person_for(self, conn: AsyncConnection, tenant: str, aliases: Sequence[str]) -> str | None:
        """The person of the first of `aliases` (strongest first) that is known, else None."""
        if not aliases:
            return None
        rows = await conn.execute(text(
            "SELECT a.person FROM contact_aliases a JOIN unnest(CAST(:a AS text[])) WITH ORDINALITY AS q(alias, n) "
            "ON a.alias = q.alias WHERE a.tenant = :t ORDER BY q.n LIMIT 1"), {"t": tenant, "a": list(aliases)})
        return rows.scalar()

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
                timezone=r.timezone, opted_in=r.opted_in, wa_id=r.wa_id, profile_name=r.profile_name,
                marketing=r.marketing, marketing_changed_at=r.marketing_changed_at, created_at=r.created_at,
                first_purchase_at=r.first_purchase_at, first_purchase_event=r.first_purchase_event,
                preferences=_preferences(r.preferences), state=_state(r.state))
            for r in rows
        }

    async def save_profiles(
        self, conn: AsyncConnection, profiles: dict[tuple[str, str], ContactProfile], now: datetime
    ) -> None:
        """Upsert each (tenant, person) → profile (every field replaced; `preferences` as jsonb, NULL when none
        were stated; `state`, the flows' memory, as jsonb); `now` (aware UTC) is `updated_at`."""
        if not profiles:
            return
        await conn.execute(text(
            "INSERT INTO contacts(tenant, contact_key, phone, name, locale, timezone, opted_in, wa_id, profile_name, "
            "marketing, marketing_changed_at, created_at, first_purchase_at, first_purchase_event, preferences, "
            "state, updated_at) "
            "VALUES (:tenant, :contact_key, :phone, :name, :locale, :timezone, :opted_in, :wa_id, :profile_name, "
            ":marketing, :marketing_changed_at, :created_at, :first_purchase_at, :first_purchase_event, "
            "CAST(:preferences AS jsonb), CAST(:state AS jsonb), :updated_at) "
            "ON CONFLICT (tenant, contact_key) DO UPDATE SET phone = EXCLUDED.phone, name = EXCLUDED.name, "
            "locale = EXCLUDED.locale, timezone = EXCLUDED.timezone, opted_in = EXCLUDED.opted_in, "
            "wa_id = EXCLUDED.wa_id, profile_name = EXCLUDED.profile_name, marketing = EXCLUDED.marketing, "
            "marketing_changed_at = EXCLUDED.marketing_changed_at, created_at = EXCLUDED.created_at, "
            "first_purchase_at = EXCLUDED.first_purchase_at, first_purchase_event = EXCLUDED.first_purchase_event, "
            "preferences = EXCLUDED.preferences, state = EXCLUDED.state, updated_at = EXCLUDED.updated_at"),
            [{"tenant": t, "contact_key": p.contact_key, "phone": p.phone, "name": p.name, "locale": p.locale,
              "timezone": p.timezone, "opted_in": p.opted_in, "wa_id": p.wa_id, "profile_name": p.profile_name,
              "marketing": p.marketing, "marketing_changed_at": p.marketing_changed_at, "created_at": p.created_at,
              "first_purchase_at": p.first_purchase_at, "first_purchase_event": p.first_purchase_event,
              "preferences": None if p.preferences is None else json.dumps(dict(p.preferences), sort_keys=True),
              "state": json.dumps(_plain(p.state), sort_keys=True), "updated_at": now}
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
        """Append decision rows in one statement; their ids follow the order of `rows` (the story's order for
        decisions taken at the same instant)."""
        if not rows:
            return
        await conn.execute(text(
            "INSERT INTO decisions(tenant, event_id, event_type, contact_key, flow, outcome, reason, "
            "idempotency_key, decided_at) SELECT t, e, et, c, f, o, r, k, d FROM unnest("
            "CAST(:t AS text[]), CAST(:e AS text[]), CAST(:et AS text[]), CAST(:c AS text[]), CAST(:f AS text[]), "
            "CAST(:o AS text[]), CAST(:r AS text[]), CAST(:k AS text[]), CAST(:d AS timestamptz[])) "
            "WITH ORDINALITY AS q(t, e, et, c, f, o, r, k, d, n) ORDER BY n"),
            {"t": [r.tenant for r in rows], "e": [r.event_id for r in rows], "et": [r.event_type for r in rows],
             "c": [r.contact_key for r in rows], "f": [r.flow for r in rows], "o": [r.outcome for r in rows],
             "r": [r.reason for r in rows], "k": [r.idempotency_key for r in rows],
             "d": [r.decided_at for r in rows]})

    async def remember(self, conn: AsyncConnection, rows: Sequence[tuple[str, str, str, str, object]]) -> None:
        """Write (tenant, person, slot, key, value) into the persons' memory (`contacts.state`), in order; a None
        value deletes the key. One statement per row (a timer pass writes a few)."""
        for tenant, person, slot, key, value in rows:
            if value is None:
                await conn.execute(text(
                    "UPDATE contacts SET state = state #- CAST(:path AS text[]) "
                    "WHERE tenant = :t AND contact_key = :c"),
                    {"t": tenant, "c": person, "path": [slot, key]})
                continue
            await conn.execute(text(
                "UPDATE contacts SET state = jsonb_set(CASE WHEN state ? :slot THEN state "
                "ELSE jsonb_set(state, CAST(:top AS text[]), '{}'::jsonb) END, CAST(:path AS text[]), "
                "CAST(:value AS jsonb)) WHERE tenant = :t AND contact_key = :c"),
                {"t": tenant, "c": person, "slot": slot, "top": [slot], "path": [slot, key],
                 "value": json.dumps(value, sort_keys=True)})

    async def save_cart_skus(self, conn: AsyncConnection, persons: Mapping[tuple[str, str], frozenset[str]]) -> None:
        """Each (tenant, person) has exactly these SKUs in open carts from now on (R-T6.2's index): two statements."""
        if not persons:
            return
        keys = sorted(persons)
        await conn.execute(text(
            "DELETE FROM cart_skus c USING unnest(CAST(:t AS text[]), CAST(:c AS text[])) AS q(t, c) "
            "WHERE c.tenant = q.t AND c.contact_key = q.c"),
            {"t": [k[0] for k in keys], "c": [k[1] for k in keys]})
        rows = [(t, sku, c) for (t, c) in keys for sku in sorted(persons[(t, c)])]
        if rows:
            await conn.execute(text(
                "INSERT INTO cart_skus(tenant, sku, contact_key) SELECT * FROM unnest(CAST(:t AS text[]), "
                "CAST(:s AS text[]), CAST(:c AS text[])) ON CONFLICT DO NOTHING"),
                {"t": [r[0] for r in rows], "s": [r[1] for r in rows], "c": [r[2] for r in rows]})

    async def fan_out(self, conn: AsyncConnection, *, tenant: str, sku: str, key_prefix: str, flow: str,
                      event_id: str, event_occurred_at: datetime | None, correlation_id: str | None,
                      due_at: datetime, expires_at: datetime | None, payload: Mapping[str, object]) -> int:
        """A pending timer `key_prefix + person` for every person of `tenant` with `sku` in an open cart (R-T6.2),
        one statement; a key kept before is left as it is. Returns how many persons it reached."""
        result = await conn.execute(text(
            "INSERT INTO timers(tenant, key, flow, contact_key, event_id, event_occurred_at, correlation_id, due_at, "
            "expires_at, payload) SELECT :t, :prefix || c.contact_key, :flow, c.contact_key, :e, :eo, :corr, :due, "
            ":exp, CAST(:payload AS jsonb) FROM cart_skus c WHERE c.tenant = :t AND c.sku = :sku "
            "ON CONFLICT (tenant, key) DO NOTHING"),
            {"t": tenant, "sku": sku, "prefix": key_prefix, "flow": flow, "e": event_id, "eo": event_occurred_at,
             "corr": correlation_id, "due": due_at, "exp": expires_at,
             "payload": json.dumps(dict(payload), sort_keys=True)})
        return result.rowcount or 0

    async def decisions_for(
        self, conn: AsyncConnection, tenant: str, contact_key: str, limit: int
    ) -> list[dict[str, object]]:
        rows = await conn.execute(text(
            "SELECT event_id, event_type, flow, outcome, reason, idempotency_key, decided_at FROM decisions "
            "WHERE tenant = :t AND contact_key = :c ORDER BY id DESC LIMIT :n"),
            {"t": tenant, "c": contact_key, "n": limit})
        return [dict(r._mapping) for r in rows]


def _state(stored: object) -> Mapping[str, Mapping[str, object]]:
    """A contacts row's `state` (jsonb) as the profile keeps it: slot → entity → JSON, read-only at the top."""
    if isinstance(stored, str):
        stored = json.loads(stored)
    if not isinstance(stored, dict):
        return MappingProxyType({})
    return MappingProxyType({slot: MappingProxyType(dict(v)) for slot, v in stored.items() if isinstance(v, dict)})


def _plain(value: object) -> object:
    """`value` with every mapping a dict (json.dumps does not take MappingProxyType)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _preferences(stored: object) -> Mapping[str, object] | None:
    """A contacts row's `preferences` (jsonb: a dict, or its JSON text as the driver may give it) as the profile
    keeps them (read-only); None for NULL or anything but an object."""
    if isinstance(stored, str):
        stored = json.loads(stored)
    return MappingProxyType(dict(stored)) if isinstance(stored, dict) else None
