"""Ingest learns which tenant owns which WhatsApp phone number id from the sender's `account.*` events.

Consumer group `ingest-accounts` on `scrm.events.v1` decodes only `account.registered` / `account.removed`
(everything else is skipped before parsing) and keeps `whatsapp_numbers` (phone number id → tenant, WABA id),
which routes Meta's webhooks: a registration gives the number to the record's tenant (its `tenant` header),
a removal takes it away only from the tenant that owns it (`ingest.domain.numbers`). There is no shared
table with the sender: the events are the only link.

Every ingest replica runs this loop in the same group, so each event is applied once, to the shared table;
the replica that applies it drops its routing caches for the number at once, the others see the change
when their cache entry expires (`SCRM_KEY_CACHE_SECONDS`, ≤ 30 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter

from ingest.adapters.db import TenantDirectory
from ingest.domain.numbers import AccountChange
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord, decoder_for
from scrm_common.contracts.events import AccountRegistrationData
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, batch_consumer
from scrm_common.kafka.consumer import Item
from scrm_common.settings import CommonSettings

log = logging.getLogger(__name__)

GROUP = "ingest-accounts"
ACCOUNT_EVENTS: frozenset[str] = frozenset({"account.registered", "account.removed"})
decode_account_event = decoder_for(ACCOUNT_EVENTS)


def account_change(record: EventRecord) -> AccountChange:
    """The routing change an `account.registered` / `account.removed` record asks for; TypeError for any
    other event (the decoder lets no other through)."""
    data = record.event.data
    if not isinstance(data, AccountRegistrationData):
        raise TypeError(f"{record.event.type} is not an account event")
    return AccountChange(tenant=record.tenant, phone_number_id=data.account_id, waba_id=data.waba_id,
                         registered=record.event.type == "account.registered",
                         occurred_at=record.event.occurred_at)


class AccountMetrics:
    """How many account events changed the routing, and how many changed nothing (older, not the owner's)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.changes = Counter("scrm_ingest_account_changes_total",
                               "account.* events applied to the phone number routing, by type and outcome "
                               "(applied, unchanged: older than the last change, a repetition, or a removal "
                               "by a tenant that does not own the number)", ["type", "outcome"], registry=registry)


class AccountProjection:
    """`BatchConsumer` handler: applies a batch of account events in order, in one transaction."""

    def __init__(self, directory: TenantDirectory, metrics: AccountMetrics) -> None:
        self._directory = directory
        self._metrics = metrics

    async def __call__(self, items: Sequence[Item[EventRecord]]) -> None:
        applied = await self._directory.apply_account_changes([account_change(i.value) for i in items])
        for change, changed in applied:
            kind = "account.registered" if change.registered else "account.removed"
            self._metrics.changes.labels(kind, "applied" if changed else "unchanged").inc()
            if changed:
                log.info("phone number %s %s tenant %s (WABA %s)", change.phone_number_id,
                         "now routes to" if change.registered else "no longer routes to", change.tenant,
                         change.waba_id or "-", extra={"tenant": change.tenant})


def accounts_consumer(settings: CommonSettings, *, producer: AIOKafkaProducer, directory: TenantDirectory,
                      registry: CollectorRegistry) -> BatchConsumer[EventRecord]:
    """The `ingest-accounts` consume loop (dead letters, retries and batching as every service's)."""
    return batch_consumer(settings, group_id=GROUP, topic=topics.EVENTS, producer=producer,
                          decode=decode_account_event,
                          handle=AccountProjection(directory, AccountMetrics(registry)),
                          metrics=ConsumerMetrics("ingest", registry))


# After the stop: how long the loop keeps applying what was published until then (the requests ingest was still
# answering, what the other services' relays sent before they paused), and the most it waits for that. Below
# `runtime.serve`'s 10 s for loops to end.
STOP_GRACE = timedelta(seconds=1)
STOP_LIMIT_SECONDS = 8.0


async def run_until_drained(consumer: BatchConsumer[EventRecord], stop: asyncio.Event) -> None:
    """Run `consumer` until `stop`, then on until it has applied everything published up to `STOP_GRACE` after
    the stop (at most `STOP_LIMIT_SECONDS`): the runner's graceful stop waits for this group to catch up after
    ingest exits, and the memory-only broker loses what it had not applied."""
    inner = asyncio.Event()
    task = asyncio.create_task(consumer.run(inner), name="ingest-accounts")
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if task.done():
        return await task  # it failed (or ended): `serve` reports it
    until = datetime.now(UTC) + STOP_GRACE
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_LIMIT_SECONDS
    while loop.time() < deadline and not task.done() and not (
            consumer.caught_up_at is not None and consumer.caught_up_at > until):
        await asyncio.sleep(0.1)
    inner.set()
    await task
