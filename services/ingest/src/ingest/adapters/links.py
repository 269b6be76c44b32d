"""Ingest keeps the short links the deciding services minted: consumer group `ingest-links` on `scrm.links.v1`.

Each record is a `ShortLink` (`scrm_common.contracts.links`, key `<tenant>:<code>`, header `tenant`) stored in
`short_links` with `ON CONFLICT DO NOTHING` (a redelivery changes nothing; a code is minted once per message
and slot, so the first record is the link). A record that does not parse is dead-lettered at once by the
consume loop and never blocks the group. `LinkStore` is what `GET /l/{code}` and `GET /r/{token}` read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from scrm_common.contracts import topics
from scrm_common.contracts.envelope import PoisonMessage, header
from scrm_common.contracts.events import Contact
from scrm_common.contracts.links import SHORT_LINK_ADAPTER, ShortLink
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, batch_consumer
from scrm_common.kafka.consumer import Item
from scrm_common.settings import CommonSettings

log = logging.getLogger(__name__)

GROUP = "ingest-links"

_COLUMNS = ("code, tenant, kind, target, flow, campaign, content, medium, idempotency_key, contact, created_at, "
            "expires_at")
_INSERT = text(f"INSERT INTO short_links ({_COLUMNS}) VALUES (:code, :tenant, :kind, :target, :flow, :campaign, "
               ":content, :medium, :idempotency_key, CAST(:contact AS jsonb), :created_at, :expires_at) "
               "ON CONFLICT (code) DO NOTHING")
_BY_CODE = text(f"SELECT {_COLUMNS} FROM short_links WHERE code = :code")
_OWNER = text("SELECT tenant, idempotency_key FROM short_links WHERE code = :code")
_RESUME_OF = text(f"SELECT {_COLUMNS} FROM short_links WHERE tenant = :tenant AND idempotency_key = :key "
                  "AND kind = 'resume' ORDER BY created_at DESC LIMIT 1")


def decode_short_link(record: ConsumerRecord) -> ShortLink:
    """The `ShortLink` of a `scrm.links.v1` record; PoisonMessage (→ dead letter) when its value is not one, or
    its `tenant` header names another tenant than the link."""
    try:
        link = SHORT_LINK_ADAPTER.validate_json(record.value or b"")
    except ValidationError as exc:
        raise PoisonMessage(f"not a short link: {exc.error_count()} errors: "
                            f"{'; '.join(e['msg'] for e in exc.errors()[:3])}") from None
    try:
        tenant = header(record.headers, "tenant")
    except UnicodeDecodeError:
        raise PoisonMessage("the tenant header is not UTF-8") from None
    if tenant is not None and tenant != link.tenant:
        raise PoisonMessage(f"the tenant header {tenant!r} does not match the link's tenant {link.tenant!r}")
    return link


def _row(link: ShortLink) -> dict[str, Any]:
    contact = link.contact.model_dump_json(exclude_none=True) if link.contact is not None else None
    return {"code": link.code, "tenant": link.tenant, "kind": link.kind, "target": link.target, "flow": link.flow,
            "campaign": link.campaign, "content": link.content, "medium": link.medium,
            "idempotency_key": link.idempotency_key, "contact": contact, "created_at": link.created_at,
            "expires_at": link.expires_at}


def _link(row: Any) -> ShortLink:
    raw = json.loads(row.contact) if isinstance(row.contact, str) else row.contact
    contact = Contact.model_validate(raw) if raw is not None else None
    return ShortLink(code=row.code, tenant=row.tenant, kind=row.kind, target=row.target, flow=row.flow,
                     campaign=row.campaign, content=row.content, medium=row.medium,
                     idempotency_key=row.idempotency_key, contact=contact, created_at=row.created_at,
                     expires_at=row.expires_at)


async def store_links(conn: AsyncConnection, links: Sequence[ShortLink]) -> int:
    """Insert `links` (the first record of a code wins); the number of new rows."""
    added = 0
    for link in links:
        result = await conn.execute(_INSERT, _row(link))
        if result.rowcount:
            added += result.rowcount
            continue
        # A redelivery names the same message; another message under the same code is a collision of two
        # HMAC codes (rare at 8+ characters): the first link keeps the code, and the operator is told.
        kept = (await conn.execute(_OWNER, {"code": link.code})).first()
        if kept is not None and (kept.tenant, kept.idempotency_key) != (link.tenant, link.idempotency_key):
            log.error("short link code collision: code %s is kept by tenant %s message %s; the link of tenant %s "
                      "message %s under it is dropped (raise the code length: a shorter SCRM_PUBLIC_BASE_URL)",
                      link.code, kept.tenant, kept.idempotency_key, link.tenant, link.idempotency_key)
    return added


async def link_by_code(conn: AsyncConnection, code: str) -> ShortLink | None:
    """The stored link of `code`, or None."""
    row = (await conn.execute(_BY_CODE, {"code": code})).first()
    return _link(row) if row is not None else None


async def resume_link_of(conn: AsyncConnection, tenant: str, key: str) -> ShortLink | None:
    """The resume short link of the message `key` of `tenant` (the newest, should there be more), or None."""
    row = (await conn.execute(_RESUME_OF, {"tenant": tenant, "key": key})).first()
    return _link(row) if row is not None else None


class LinkStore:
    """The `short_links` table: one transaction per call."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(self, links: Sequence[ShortLink]) -> int:
        """Store `links` in one transaction (ON CONFLICT DO NOTHING); the number of new rows."""
        async with self._engine.begin() as conn:
            return await store_links(conn, links)

    async def by_code(self, code: str) -> ShortLink | None:
        """The link of `code`, or None; raises SQLAlchemy's errors when the database fails."""
        async with self._engine.connect() as conn:
            return await link_by_code(conn, code)

    async def resume_of(self, tenant: str, key: str) -> ShortLink | None:
        """The resume short link of message `key` of `tenant`, or None."""
        async with self._engine.connect() as conn:
            return await resume_link_of(conn, tenant, key)


class LinkProjection:
    """`BatchConsumer` handler: stores a batch of short links in one transaction."""

    def __init__(self, store: LinkStore) -> None:
        self._store = store

    async def __call__(self, items: Sequence[Item[ShortLink]]) -> None:
        added = await self._store.save([i.value for i in items])
        log.debug("short links: %d received, %d new", len(items), added)


def links_consumer(settings: CommonSettings, *, producer: AIOKafkaProducer, store: LinkStore,
                   registry: CollectorRegistry) -> BatchConsumer[ShortLink]:
    """The `ingest-links` consume loop (dead letters, retries and batching as every service's). Its consumer
    metrics are `scrm_ingest_links_*` (the `scrm_ingest_*` ones are the `ingest-accounts` loop's)."""
    return batch_consumer(settings, group_id=GROUP, topic=topics.LINKS, producer=producer,
                          decode=decode_short_link, handle=LinkProjection(store),
                          metrics=ConsumerMetrics("ingest-links", registry))
