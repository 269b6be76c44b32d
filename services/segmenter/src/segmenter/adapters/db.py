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
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures
from segmenter.domain.roster import AliasRef, ContactRef, MessageRef
from segmenter.handlers import ConcurrentWrite, ContactChanges, ContactRow, EventRef, StoredCurrency

SCHEMA = "segmenter"

_LOAD_ALIASES = text("""
    SELECT a.tenant, a.alias, a.contact_key
    FROM contact_aliases a
    JOIN unnest(CAST(:tenants AS text[]), CAST(:aliases AS text[])) AS w(tenant, alias)
      ON a.tenant = w.tenant AND a.alias = w.alias
    ORDER BY a.tenant, a.alias
    FOR UPDATE OF a""")

_ALIASES_OF = text("""
    SELECT a.tenant, a.alias, a.contact_key
    FROM contact_aliases a
    JOIN unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS w(tenant, contact_key)
      ON a.tenant = w.tenant AND a.contact_key = w.contact_key
    ORDER BY a.tenant, a.alias
    FOR UPDATE OF a""")

_LOAD_CONTACTS = text("""
    SELECT c.tenant, c.contact_key, c.features::text
    FROM contacts c
    JOIN unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS w(tenant, contact_key)
      ON c.tenant = w.tenant AND c.contact_key = w.contact_key
    ORDER BY c.tenant, c.contact_key
    FOR UPDATE OF c""")

_ROWS = """unnest(CAST(:tenant AS text[]), CAST(:contact_key AS text[]), CAST(:external_id AS text[]),
                  CAST(:phone AS text[]), CAST(:wa_id AS text[]), CAST(:features AS text[]),
                  CAST(:activity_tier AS text[]), CAST(:value_tier AS text[]), CAST(:tags AS text[]),
                  CAST(:last_event_at AS timestamptz[]), CAST(:computed_at AS timestamptz[]),
                  CAST(:refresh_at AS timestamptz[]))
           AS u(tenant, contact_key, external_id, phone, wa_id, features, activity_tier, value_tier, tags,
                last_event_at, computed_at, refresh_at)"""

_INSERT_CONTACTS = text(f"""
    INSERT INTO contacts (tenant, contact_key, external_id, phone, wa_id, features, activity_tier, value_tier,
                          tags, last_event_at, computed_at, refresh_at)
    SELECT u.tenant, u.contact_key, u.external_id, u.phone, u.wa_id, CAST(u.features AS jsonb), u.activity_tier,
           u.value_tier, ARRAY(SELECT jsonb_array_elements_text(CAST(u.tags AS jsonb))), u.last_event_at,
           u.computed_at, u.refresh_at
    FROM {_ROWS}
    ON CONFLICT DO NOTHING
    RETURNING contact_key""")

_UPDATE_CONTACTS = text(f"""
    UPDATE contacts c SET external_id = u.external_id, phone = u.phone, wa_id = u.wa_id,
           features = CAST(u.features AS jsonb), activity_tier = u.activity_tier, value_tier = u.value_tier,
           tags = ARRAY(SELECT jsonb_array_elements_text(CAST(u.tags AS jsonb))),
           last_event_at = u.last_event_at, computed_at = u.computed_at, refresh_at = u.refresh_at,
           updated_at = now()
    FROM {_ROWS}
    WHERE c.tenant = u.tenant AND c.contact_key = u.contact_key""")

_DELETE_CONTACTS = text("""
    DELETE FROM contacts c
    USING unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS u(tenant, contact_key)
    WHERE c.tenant = u.tenant AND c.contact_key = u.contact_key""")

_INSERT_ALIASES = text("""
    INSERT INTO contact_aliases (tenant, alias, contact_key)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:aliases AS text[]), CAST(:keys AS text[]))
    ON CONFLICT DO NOTHING
    RETURNING alias""")

_UPDATE_ALIASES = text("""
    UPDATE contact_aliases a SET contact_key = u.contact_key
    FROM unnest(CAST(:tenants AS text[]), CAST(:aliases AS text[]), CAST(:keys AS text[]))
      AS u(tenant, alias, contact_key)
    WHERE a.tenant = u.tenant AND a.alias = u.alias""")

_RECIPIENTS = text("""
    SELECT r.tenant, r.idempotency_key, r.contact_key
    FROM message_recipients r
    JOIN unnest(CAST(:tenants AS text[]), CAST(:keys AS text[])) AS w(tenant, idempotency_key)
      ON r.tenant = w.tenant AND r.idempotency_key = w.idempotency_key
    ORDER BY r.tenant, r.idempotency_key
    FOR UPDATE OF r""")

# A merge or re-key: the messages sent to the old contact were sent to the person, whose key changed.
_RENAME_RECIPIENTS = text("""
    UPDATE message_recipients SET contact_key = :new WHERE tenant = :tenant AND contact_key = :old""")

_PUT_RECIPIENTS = text("""
    INSERT INTO message_recipients (tenant, idempotency_key, contact_key)
    SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:keys AS text[]), CAST(:contacts AS text[]))
    ON CONFLICT (tenant, idempotency_key) DO UPDATE SET contact_key = EXCLUDED.contact_key""")

_CURRENCIES = text("""
    SELECT tenant, base_currency, rates::text, as_of FROM currency_settings
    WHERE tenant = ANY(CAST(:tenants AS text[]))""")

_CURRENCY = text("""
    SELECT base_currency, rates::text, as_of, updated_at FROM currency_settings WHERE tenant = :tenant""")

_PUT_CURRENCY = text("""
    INSERT INTO currency_settings (tenant, base_currency, rates, as_of, updated_at)
    VALUES (:tenant, :base, CAST(:rates AS jsonb), :as_of, :now)
    ON CONFLICT (tenant) DO UPDATE SET base_currency = EXCLUDED.base_currency, rates = EXCLUDED.rates,
                                      as_of = EXCLUDED.as_of, updated_at = EXCLUDED.updated_at""")

# New rates change value tiers: the refresher recomputes the tenant's customers from `now` on.
_STALE_VALUE_TIERS = text("""
    UPDATE contacts SET refresh_at = :now
    WHERE tenant = :tenant AND value_tier IS NOT NULL AND (refresh_at IS NULL OR refresh_at > :now)""")

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
        SELECT array_position(CAST(:aliases AS text[]), a.alias), c.contact_key, c.features
        FROM contact_aliases a
        JOIN contacts c ON c.tenant = a.tenant AND c.contact_key = a.contact_key
        WHERE a.tenant = :tenant AND a.alias = ANY(CAST(:aliases AS text[]))
    ) found ORDER BY rank LIMIT 1""")


def _currency(base: str, rates: str, as_of: Any) -> CurrencySettings:
    return CurrencySettings(base_currency=base, rates=json.loads(rates), as_of=as_of)


def _columns(rows: Sequence[ContactRow]) -> dict[str, list[Any]]:
    return {
        "tenant": [r.tenant for r in rows],
        "contact_key": [r.key for r in rows],
        "external_id": [r.features.external_id for r in rows],
        "phone": [r.features.phone for r in rows],
        "wa_id": [r.features.wa_id for r in rows],
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

    async def load(self, keys: set[ContactRef], aliases: set[AliasRef]
                   ) -> tuple[dict[ContactRef, ContactFeatures], dict[AliasRef, str]]:
        owners: dict[AliasRef, str] = {}
        if aliases:
            ordered = sorted(aliases)
            result = await self._conn.execute(_LOAD_ALIASES, {"tenants": [a[0] for a in ordered],
                                                              "aliases": [a[1] for a in ordered]})
            owners = {(row[0], row[1]): row[2] for row in result}
        wanted = sorted(keys | {(ref[0], key) for ref, key in owners.items()})
        contacts: dict[ContactRef, ContactFeatures] = {}
        if wanted:
            result = await self._conn.execute(_LOAD_CONTACTS, {"tenants": [k[0] for k in wanted],
                                                               "keys": [k[1] for k in wanted]})
            contacts = {(row[0], row[1]): ContactFeatures.model_validate_json(row[2]) for row in result}
        if contacts:
            found = sorted(contacts)
            result = await self._conn.execute(_ALIASES_OF, {"tenants": [k[0] for k in found],
                                                            "keys": [k[1] for k in found]})
            owners.update({(row[0], row[1]): row[2] for row in result})
        return contacts, owners

    async def recipients(self, messages: set[MessageRef]) -> dict[MessageRef, str]:
        ordered = sorted(messages)
        result = await self._conn.execute(_RECIPIENTS, {"tenants": [m[0] for m in ordered],
                                                        "keys": [m[1] for m in ordered]})
        return {(row[0], row[1]): row[2] for row in result}

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
        if changes.aliases_inserted:
            refs = sorted(changes.aliases_inserted)
            created = (await self._conn.execute(_INSERT_ALIASES, {
                "tenants": [r[0] for r in refs], "aliases": [r[1] for r in refs],
                "keys": [changes.aliases_inserted[r] for r in refs]})).all()
            if len(created) != len(refs):
                raise ConcurrentWrite("an alias was claimed concurrently")
        if changes.aliases_updated:
            refs = sorted(changes.aliases_updated)
            await self._conn.execute(_UPDATE_ALIASES, {
                "tenants": [r[0] for r in refs], "aliases": [r[1] for r in refs],
                "keys": [changes.aliases_updated[r] for r in refs]})
        for tenant, old, new in changes.renamed:
            await self._conn.execute(_RENAME_RECIPIENTS, {"tenant": tenant, "old": old, "new": new})
        if changes.recipients:
            refs = sorted(changes.recipients)
            await self._conn.execute(_PUT_RECIPIENTS, {
                "tenants": [r[0] for r in refs], "keys": [r[1] for r in refs],
                "contacts": [changes.recipients[r] for r in refs]})

    async def due(self, now: datetime, limit: int) -> dict[ContactRef, ContactFeatures]:
        result = await self._conn.execute(_DUE, {"now": now, "limit": limit})
        return {(row[0], row[1]): ContactFeatures.model_validate_json(row[2]) for row in result}

    async def currencies(self, tenants: set[str]) -> dict[str, CurrencySettings]:
        result = await self._conn.execute(_CURRENCIES, {"tenants": sorted(tenants)})
        return {row[0]: _currency(row[1], row[2], row[3]) for row in result}


class PostgresContactStore:
    """Contacts in the `segmenter` schema."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[PostgresContactUnit]:
        async with self._engine.begin() as conn:
            yield PostgresContactUnit(conn)

    async def find(self, tenant: str, ref: str, aliases: Sequence[str]) -> tuple[str, ContactFeatures] | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_FIND, {"tenant": tenant, "ref": ref, "aliases": list(aliases)})).first()
        if row is None:
            return None
        return row[0], ContactFeatures.model_validate_json(row[1])

    async def currency(self, tenant: str) -> StoredCurrency | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_CURRENCY, {"tenant": tenant})).first()
        if row is None:
            return None
        return StoredCurrency(settings=_currency(row[0], row[1], row[2]), updated_at=row[3])

    async def put_currency(self, tenant: str, settings: CurrencySettings, now: datetime) -> None:
        rates = json.dumps({c: str(r) for c, r in sorted(settings.rates.items())})
        async with self._engine.begin() as conn:
            await conn.execute(_PUT_CURRENCY, {"tenant": tenant, "base": settings.base_currency, "rates": rates,
                                               "as_of": settings.as_of, "now": now})
            await conn.execute(_STALE_VALUE_TIERS, {"tenant": tenant, "now": now})

    async def ping(self) -> bool:
        try:
            async with self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True
