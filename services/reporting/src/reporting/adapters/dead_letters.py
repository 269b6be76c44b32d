"""The dead-letter store on PostgreSQL (table `reporting.dead_letters`, migrations 005 and 006)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.dead_letters import Publish, Republished, StoredDeadLetter
from reporting.domain.dead_letters import Header, NewDeadLetter, check_replay

_COLUMNS = ("service, failure, error, tries, source_topic, source_partition, source_offset, record_key, "
            "record_headers, record_value, tenant, event_id, event_type, contact_key, dead_lettered_at, "
            "dl_partition, dl_offset, dead_letter_id, truncated, value_size, value_sha256")

# Unique on dead_letter_id, or — older records without one — on (source_topic, source_partition, source_offset,
# coalesce(service, '')): stored once either way.
_INSERT = text(f"""
    INSERT INTO dead_letters ({_COLUMNS})
    VALUES (:service, :failure, :error, :tries, :source_topic, :source_partition, :source_offset, :record_key,
            CAST(:record_headers AS json), :record_value, :tenant, :event_id, :event_type, :contact_key,
            :dead_lettered_at, :dl_partition, :dl_offset, :dead_letter_id, :truncated, :value_size,
            :value_sha256)
    ON CONFLICT DO NOTHING
    RETURNING service""")

_SELECT = f"SELECT id, {_COLUMNS}, stored_at, replayed_at, replay_count FROM dead_letters"


def _headers_json(headers: Sequence[Header]) -> str:
    """Headers as JSON `[[name, base64 value | null], …]` (the `json` type keeps a NUL escape; jsonb would not)."""
    return json.dumps([[name, None if raw is None else base64.b64encode(raw).decode()] for name, raw in headers])


def _headers_from(raw: Any) -> tuple[Header, ...]:
    pairs = json.loads(raw) if isinstance(raw, str) else raw
    return tuple((str(name), None if value is None else base64.b64decode(value)) for name, value in pairs)


def _row(r: Any) -> StoredDeadLetter:
    letter = NewDeadLetter(
        service=r.service, failure=r.failure, error=r.error, tries=r.tries, source_topic=r.source_topic,
        source_partition=r.source_partition, source_offset=r.source_offset, key=r.record_key,
        headers=_headers_from(r.record_headers), value=r.record_value, tenant=r.tenant, event_id=r.event_id,
        event_type=r.event_type, contact_key=r.contact_key, dead_lettered_at=r.dead_lettered_at,
        dl_partition=r.dl_partition, dl_offset=r.dl_offset, dead_letter_id=r.dead_letter_id,
        truncated=r.truncated, value_size=r.value_size, value_sha256=r.value_sha256)
    return StoredDeadLetter(id=r.id, letter=letter, stored_at=r.stored_at, replayed_at=r.replayed_at,
                            replay_count=r.replay_count)


class PostgresDeadLetterStore:
    """`reporting.dead_letters.DeadLetterStore` on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, letters: Sequence[NewDeadLetter]) -> list[str | None]:
        """Store dead letters not stored before (one transaction); return the services of the new ones."""
        stored: list[str | None] = []
        async with self._engine.begin() as conn:
            for d in letters:  # dead letters are few: one statement each keeps RETURNING simple
                result = await conn.execute(_INSERT, {
                    "service": d.service, "failure": d.failure, "error": d.error, "tries": d.tries,
                    "source_topic": d.source_topic, "source_partition": d.source_partition,
                    "source_offset": d.source_offset, "record_key": d.key, "record_headers": _headers_json(d.headers),
                    "record_value": d.value, "tenant": d.tenant, "event_id": d.event_id,
                    "event_type": d.event_type, "contact_key": d.contact_key,
                    "dead_lettered_at": d.dead_lettered_at, "dl_partition": d.dl_partition,
                    "dl_offset": d.dl_offset, "dead_letter_id": d.dead_letter_id, "truncated": d.truncated,
                    "value_size": d.value_size, "value_sha256": d.value_sha256})
                stored.extend(row.service for row in result)
        return stored

    async def page(self, tenant: str, *, service: str | None, event_type: str | None, replayed: bool | None,
                   before: int | None, limit: int) -> list[StoredDeadLetter]:
        """`tenant`'s dead letters, newest first (by id), filtered; at most `limit`."""
        where = ["tenant = :tenant"]
        params: dict[str, Any] = {"tenant": tenant, "limit": limit}
        if service is not None:
            where.append("service = :service")
            params["service"] = service
        if event_type is not None:
            where.append("event_type = :event_type")
            params["event_type"] = event_type
        if replayed is not None:
            where.append("replayed_at IS NOT NULL" if replayed else "replayed_at IS NULL")
        if before is not None:
            where.append("id < :before")
            params["before"] = before
        async with self._engine.connect() as conn:
            rows = await conn.execute(text(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit"),
                                      params)
            return [_row(r) for r in rows]

    async def get(self, tenant: str, letter_id: int) -> StoredDeadLetter | None:
        """`tenant`'s dead letter `letter_id`, or None."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(text(f"{_SELECT} WHERE tenant = :tenant AND id = :id"),
                                      {"tenant": tenant, "id": letter_id})).first()
        return _row(row) if row is not None else None

    async def replay(self, tenant: str, letter_id: int, *, force: bool, now: datetime,
                     publish: Publish) -> tuple[StoredDeadLetter, Republished] | None:
        """Lock, check, publish (acks=all) and mark replayed in one transaction: two replays at once run one
        after the other, so the second sees the first's mark."""
        async with self._engine.begin() as conn:
            row = (await conn.execute(text(f"{_SELECT} WHERE tenant = :tenant AND id = :id FOR UPDATE"),
                                      {"tenant": tenant, "id": letter_id})).first()
            if row is None:
                return None
            letter = _row(row)
            check_replay(replayed_at=letter.replayed_at, source_topic=letter.letter.source_topic, force=force,
                         truncated=letter.letter.truncated)
            where = await publish(letter)
            updated = (await conn.execute(text(
                f"UPDATE dead_letters SET replayed_at = :now, replay_count = replay_count + 1 WHERE id = :id "
                f"RETURNING id, {_COLUMNS}, stored_at, replayed_at, replay_count"),
                {"now": now, "id": letter_id})).one()
        return _row(updated), where

    async def ping(self) -> bool:
        """The store answers."""
        async with self._engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar() == 1
