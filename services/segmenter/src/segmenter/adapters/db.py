"""The contact store on PostgreSQL (schema `segmenter`): a few set-based statements per batch."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.db.inbox import claim_events
from segmenter.domain.features import ContactFeatures
from segmenter.domain.roster import ContactRef, PhoneRef
from segmenter.handlers import ConcurrentWrite, ContactChanges, ContactRow, EventRef

SCHEMA = "segmenter"

_LOAD_PHONES = text("""
    SELECT p.tenant, p.phone, p.contact_key
    FROM contact_phones p
    JOIN unnest(CAST(:tenants AS text[]), CAST(:phones AS text[])) AS w(tenant, phone)
      ON p.tenant = w.tenant AND p.phone = w.phone
    ORDER BY p.tenant, p.phone
    FOR UPDATE OF p""")

_LOAD_CONTACTS = text("""
    SELECT c.tenant, c.contact_key, c.features::text
    FROM contacts c
    JOIN unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS w(tenant, contact_key)
      ON c.tenant = w.tenant AND c.contact_key = w.contact_key
    ORDER BY c.tenant, c.contact_key
    FOR UPDATE OF c""")

_ROWS = """unnest(CAST(:tenant AS text[]), CAST(:contact_key AS text[]), CAST(:external_id AS text[]),
                  CAST(:phone AS text[]), CAST(:features AS text[]), CAST(:activity_tier AS text[]),
                  CAST(:value_tier AS text[]), CAST(:tags AS text[]), CAST(:last_event_at AS timestamptz[]),
                  CAST(:computed_at AS timestamptz[]), CAST(:refresh_at AS timestamptz[]))
           AS u(tenant, contact_key, external_id, phone, features, activity_tier, value_tier, tags,
                last_event_at, computed_at, refresh_at)"""

_INSERT_CONTACTS = text(f"""
    INSERT INTO contacts (tenant, contact_key, external_id, phone, features, activity_tier, value_tier, tags,
                          last_event_at, computed_at, refresh_at)
    SELECT u.tenant, u.contact_key, u.external_id, u.phone, CAST(u.features AS jsonb), u.activity_tier,
           u.value_tier, ARRAY(SELECT jsonb_array_elements_text(CAST(u.tags AS jsonb))), u.last_event_at,
           u.computed_at, u.refresh_at
    FROM {_ROWS}
    ON CONFLICT DO NOTHING
    RETURNING contact_key""")

_UPDATE_CONTACTS = text(f"""
    UPDATE contacts c SET external_id = u.external_id, phone = u.phone, features = CAST(u.features AS jsonb),
           activity_tier = u.activity_tier, value_tier = u.value_tier,
           tags = ARRAY(SELECT jsonb_array_elements_text(CAST(u.tags AS jsonb))),
           last_event_at = u.last_event_at, computed_at = u.computed_at, refresh_at = u.refresh_at,
           updated_at = now()
    FROM {_ROWS}
    WHERE c.tenant = u.tenant AND c.contact_key = u.contact_key""")

_DELETE_CONTACTS = text("""
    DELETE FROM contacts c
    USING unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS u(tenant, contact_key)
    WHERE c.tenant = u.tenant AND c.contact_key = u.contact_key""")

_INSERT_PHONES = text("""
    INSERT INTO contact_phones (tenant, phone, contact_key)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:phones AS text[]), CAST(:keys AS text[]))
    ON CONFLICT DO NOTHING
    RETURNING phone""")

_UPDATE_PHONES = text("""
    UPDATE contact_phones p SET contact_key = u.contact_key
    FROM unnest(CAST(:tenants AS text[]), CAST(:phones AS text[]), CAST(:keys AS text[]))
      AS u(tenant, phone, contact_key)
    WHERE p.tenant = u.tenant AND p.phone = u.phone""")

_DUE = text("""
    SELECT tenant, contact_key, features::text FROM contacts
    WHERE refresh_at <= :now
    ORDER BY refresh_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED""")

_FIND = text("""
    SELECT contact_key, features::text FROM (
        SELECT 0 AS rank, c.contact_key, c.features FROM contacts c
        WHERE c.tenant = :tenant AND c.contact_key = :ref
        UNION ALL
        SELECT 1, c.contact_key, c.features FROM contact_phones p
        JOIN contacts c ON c.tenant = p.tenant AND c.contact_key = p.contact_key
        WHERE p.tenant = :tenant AND p.phone = :phone
    ) found ORDER BY rank LIMIT 1""")


def _columns(rows: Sequence[ContactRow]) -> dict[str, list[Any]]:
    return {
        "tenant": [r.tenant for r in rows],
        "contact_key": [r.key for r in rows],
        "external_id": [r.features.external_id for r in rows],
        "phone": [r.features.phone for r in rows],
        "features": [r.features.model_dump_json() for r in rows],
        "activity_tier": [r.activity_tier for r in rows],
        "value_tier": [r.value_tier for r in rows],
        "tags": [json.dumps(list(r.tags)) for r in rows],
        "last_event_at": [r.features.last_event_at for r in rows],
        "computed_at": [r.computed_at for r in rows],
        "refresh_at": [r.refresh_at for r in rows],
    }


class PostgresContactUnit:
    """One transaction on the contact tables."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def claim(self, events: Sequence[EventRef]) -> set[EventRef]:
        return await claim_events(self._conn, events)

    async def load(self, keys: set[ContactRef], phones: set[PhoneRef]
                   ) -> tuple[dict[ContactRef, ContactFeatures], dict[PhoneRef, str]]:
        owners: dict[PhoneRef, str] = {}
        if phones:
            ordered = sorted(phones)
            result = await self._conn.execute(_LOAD_PHONES, {"tenants": [p[0] for p in ordered],
                                                             "phones": [p[1] for p in ordered]})
            owners = {(row[0], row[1]): row[2] for row in result}
        wanted = sorted(keys | {(ref[0], key) for ref, key in owners.items()})
        contacts: dict[ContactRef, ContactFeatures] = {}
        if wanted:
            result = await self._conn.execute(_LOAD_CONTACTS, {"tenants": [k[0] for k in wanted],
                                                               "keys": [k[1] for k in wanted]})
            contacts = {(row[0], row[1]): ContactFeatures.model_validate_json(row[2]) for row in result}
        return contacts, owners

    async def save(self, changes: ContactChanges) -> None:
        if changes.deleted:
            await self._conn.execute(_DELETE_CONTACTS, {"tenants": [r[0] for r in changes.deleted],
                                                        "keys": [r[1] for r in changes.deleted]})
        if changes.inserted:
            created = (await self._conn.execute(_INSERT_CONTACTS, _columns(changes.inserted))).all()
            if len(created) != len(changes.inserted):
                raise ConcurrentWrite("a contact was created concurrently")
        if changes.updated:
            await self._conn.execute(_UPDATE_CONTACTS, _columns(changes.updated))
        if changes.phones_inserted:
            refs = sorted(changes.phones_inserted)
            created = (await self._conn.execute(_INSERT_PHONES, {
                "tenants": [r[0] for r in refs], "phones": [r[1] for r in refs],
                "keys": [changes.phones_inserted[r] for r in refs]})).all()
            if len(created) != len(refs):
                raise ConcurrentWrite("a phone number was claimed concurrently")
        if changes.phones_updated:
            refs = sorted(changes.phones_updated)
            await self._conn.execute(_UPDATE_PHONES, {
                "tenants": [r[0] for r in refs], "phones": [r[1] for r in refs],
                "keys": [changes.phones_updated[r] for r in refs]})

    async def due(self, now: datetime, limit: int) -> dict[ContactRef, ContactFeatures]:
        result = await self._conn.execute(_DUE, {"now": now, "limit": limit})
        return {(row[0], row[1]): ContactFeatures.model_validate_json(row[2]) for row in result}


class PostgresContactStore:
    """Contacts in the `segmenter` schema."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[PostgresContactUnit]:
        async with self._engine.begin() as conn:
            yield PostgresContactUnit(conn)

    async def find(self, tenant: str, ref: str, phone: str | None) -> tuple[str, ContactFeatures] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_FIND, {"tenant": tenant, "ref": ref, "phone": phone})).first()
        if row is None:
            return None
        return row[0], ContactFeatures.model_validate_json(row[1])

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True
