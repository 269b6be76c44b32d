"""Webhooks reach the tenant the sender's `account.*` events name, through a real Tansu broker and PostgreSQL:
a registration routes a number (dropping ingest's cached "nobody"), another tenant's removal changes nothing,
the owner's removal stops it; a number nobody owns is acknowledged, counted and published nowhere; the bootstrap
never moves a number; the loop applies what was published up to its stop."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from ingest.adapters.accounts import (
    GROUP,
    AccountMetrics,
    AccountProjection,
    accounts_consumer,
    decode_account_event,
    run_until_drained,
)
from ingest.adapters.db import TenantDirectory
from ingest.config import Settings
from ingest.domain.numbers import AccountChange
from scrm_common.backoff import Backoff
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import EventRecord, encode_event
from scrm_common.contracts.events import AccountRegistered, AccountRegistrationData, AccountRemoved, parse_event
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, ensure_topics, make_producer
from scrm_common.kafka.consumer import classify
from tests.integration.common.kafka_support import eventually, group_consumer
from tests.integration.ingest.conftest import APP_SECRET, Ingest

PARTITIONS = 3


@pytest.fixture(scope="module")
async def producer(broker: str) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(broker, partitions=PARTITIONS, replication=1)
    started = await make_producer(broker, client_id="it-sender")
    yield started
    await started.stop()


def number() -> str:
    return "1" + str(uuid.uuid4().int)[:14]


async def announce(producer: AIOKafkaProducer, tenant: str, kind: str, phone_number_id: str,
                   waba_id: str | None = None, at: datetime | None = None, partition: int | None = None) -> None:
    """What the sender's outbox publishes: `account.registered` / `account.removed`, the tenant in the header."""
    at = at or datetime.now(UTC)
    data = AccountRegistrationData(account_id=phone_number_id, waba_id=waba_id)
    event_id = f"acct-{uuid.uuid4().hex[:12]}"
    event = AccountRegistered(event_id=event_id, type="account.registered", occurred_at=at, data=data) \
        if kind == "registered" else AccountRemoved(event_id=event_id, type="account.removed", occurred_at=at, data=data)
    key, value, headers = encode_event(tenant, event, ingested_at=at)
    await producer.send_and_wait(topics.EVENTS, key=key, value=value, headers=headers, partition=partition)


def consumer_for(broker: str, producer: AIOKafkaProducer, ingest: Ingest) -> BatchConsumer[EventRecord]:
    """The `ingest-accounts` loop as `accounts_consumer` builds it (with the tests' short group timeouts and a
    group of this test's own), applying to the app's own directory and counting in its registry."""
    return BatchConsumer(
        consumer=group_consumer(broker, group_id=f"{GROUP}-{uuid.uuid4().hex[:8]}", topic=topics.EVENTS,
                                max_records=100),
        producer=producer, topic=topics.EVENTS, decode=decode_account_event,
        handle=AccountProjection(ingest.directory, AccountMetrics(ingest.registry)),
        metrics=ConsumerMetrics("ingest", ingest.registry), max_tries=2, backoff=Backoff(0.01, 0.05),
        max_records=100, service=GROUP)


@pytest.fixture
async def running(broker: str, producer: AIOKafkaProducer, ingest: Ingest) -> AsyncIterator[BatchConsumer[Any]]:
    """A loop that has joined and applied what earlier tests of the module published (its group is new)."""
    consumer = consumer_for(broker, producer, ingest)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: consumer.caught_up_at is not None, timeout=30, what="the consumer to join and catch up")
    yield consumer
    stop.set()
    await asyncio.wait_for(task, timeout=15)


def webhook(phone_number_id: str, waba_id: str = "200000000000999") -> bytes:
    message_id = f"wamid.{uuid.uuid4().hex}"
    return json.dumps({"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": phone_number_id},
            "contacts": [{"wa_id": "4915112345678", "profile": {"name": "Anna"}}],
            "messages": [{"from": "4915112345678", "id": message_id, "timestamp": "1764579600", "type": "text",
                          "text": {"body": "Hallo"}}]}}]}]}).encode()


async def post_webhook(ingest: Ingest, raw: bytes) -> dict[str, Any]:
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    resp = await ingest.client.post("/v1/webhooks/whatsapp", content=raw,
                                    headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def skipped(ingest: Ingest, reason: str) -> float:
    return ingest.metric("scrm_ingest_webhook_skipped_total", reason=reason)


def changes(ingest: Ingest, **labels: str) -> float:
    return ingest.metric("scrm_ingest_account_changes_total", **labels)


async def tenants(directory: TenantDirectory, *names: str) -> None:
    for name in names:
        await directory.create_tenant(name, name=None)


async def test_account_events_route_webhooks_to_their_tenant(ingest: Ingest, producer: AIOKafkaProducer,
                                                             running: BatchConsumer[Any],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    shop_a, shop_b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    await tenants(ingest.directory, shop_a, shop_b)
    phone = number()
    unchanged_removals = changes(ingest, type="account.removed", outcome="unchanged")
    removals = changes(ingest, type="account.removed", outcome="applied")
    registrations = changes(ingest, type="account.registered", outcome="applied")

    # Nobody owns it yet: 200, counted, published nowhere — and "nobody" is now in ingest's 30 s cache.
    assert await post_webhook(ingest, webhook(phone)) == {"received": 0}
    assert ingest.recorder.sent == [] and skipped(ingest, "unknown_number") == 1
    assert any(r.getMessage().startswith("webhook item skipped: unknown_number") and phone in r.getMessage()
               for r in caplog.records), caplog.text

    await announce(producer, shop_a, "registered", phone, "200000000000555")
    await eventually(lambda: ingest.directory.tenant_of_number(phone), timeout=20, what="the registration")
    assert await ingest.directory.tenant_of_number(phone) == shop_a  # the cached "nobody" was dropped
    assert await post_webhook(ingest, webhook(phone)) == {"received": 1}
    assert ingest.recorder.tenants() == [shop_a]

    # Another tenant cannot remove it.
    await announce(producer, shop_b, "removed", phone)
    await eventually(lambda: changes(ingest, type="account.removed", outcome="unchanged") == unchanged_removals + 1,
                     timeout=20, what="b's removal to be applied")
    assert await post_webhook(ingest, webhook(phone)) == {"received": 1}
    assert ingest.recorder.tenants() == [shop_a, shop_a]

    # The owner's removal stops the routing at once in this process.
    await announce(producer, shop_a, "removed", phone)
    await eventually(lambda: changes(ingest, type="account.removed", outcome="applied") == removals + 1,
                     timeout=20, what="a's removal to be applied")
    assert await post_webhook(ingest, webhook(phone)) == {"received": 0}
    assert ingest.recorder.tenants() == [shop_a, shop_a]
    assert skipped(ingest, "unknown_number") == 2

    # The number moves to b when b registers it later.
    await announce(producer, shop_b, "registered", phone, "200000000000666")
    await eventually(lambda: changes(ingest, type="account.registered", outcome="applied") == registrations + 2,
                     timeout=20, what="b's registration")
    assert await post_webhook(ingest, webhook(phone)) == {"received": 1}
    assert ingest.recorder.tenants() == [shop_a, shop_a, shop_b]


async def test_other_events_on_the_topic_are_not_the_loops_business(ingest: Ingest, producer: AIOKafkaProducer,
                                                                     running: BatchConsumer[Any]) -> None:
    shop = f"c-{uuid.uuid4().hex[:8]}"
    await tenants(ingest.directory, shop)
    phone = number()
    before = changes(ingest)
    # A shop event (decoded as nothing) and then the registration, in one partition so in this order: the loop
    # passes over the first (no dead letter) and applies the second.
    event = {"event_id": "c-1", "type": "contact.created", "occurred_at": datetime.now(UTC).isoformat(),
             "contact": {"external_id": "cust-1"}}
    key, value, headers = encode_event(shop, parse_event(event), ingested_at=datetime.now(UTC))
    await producer.send_and_wait(topics.EVENTS, key=key, value=value, headers=headers, partition=0)
    await announce(producer, shop, "registered", phone, partition=0)
    await eventually(lambda: ingest.directory.tenant_of_number(phone), timeout=20, what="the registration")
    assert ingest.metric("scrm_ingest_dead_letters_total") == 0
    assert changes(ingest) == before + 1


async def test_the_bootstrap_seeds_an_unknown_number_but_never_moves_one(engine: Any) -> None:
    directory = TenantDirectory(engine, cache_seconds=0)
    owner, other = f"o-{uuid.uuid4().hex[:8]}", f"p-{uuid.uuid4().hex[:8]}"
    await tenants(directory, owner)
    owned, fresh = number(), number()
    await directory.apply_account_changes([AccountChange(owner, owned, "200000000000777", True, datetime.now(UTC))])

    await directory.bootstrap(tenant=other, api_key=None, phone_number_id=owned, waba_id="200000000000888")
    assert await directory.tenant_of_number(owned) == owner
    assert await directory.tenant_of_waba("200000000000777") == owner
    assert await directory.tenant_of_waba("200000000000888") is None

    await directory.bootstrap(tenant=other, api_key=None, phone_number_id=fresh, waba_id="200000000000889")
    assert await directory.tenant_of_number(fresh) == other

    # A removed number stays removed across starts, and events override the seed.
    await directory.apply_account_changes([AccountChange(owner, owned, None, False, datetime.now(UTC))])
    await directory.bootstrap(tenant=owner, api_key=None, phone_number_id=owned)
    assert await directory.tenant_of_number(owned) is None
    await directory.apply_account_changes([AccountChange(owner, fresh, "200000000000890", True, datetime.now(UTC))])
    assert await directory.tenant_of_number(fresh) == owner


async def test_a_late_registration_older_than_the_removal_does_not_bring_a_number_back(engine: Any) -> None:
    directory = TenantDirectory(engine, cache_seconds=0)
    shop = f"l-{uuid.uuid4().hex[:8]}"
    await tenants(directory, shop)
    phone, now = number(), datetime.now(UTC)
    applied = await directory.apply_account_changes([
        AccountChange(shop, phone, "W", False, now),  # the removal arrives first (another partition)
        AccountChange(shop, phone, "W", True, now - timedelta(seconds=5)),
    ])
    assert [changed for _, changed in applied] == [True, False]
    assert await directory.tenant_of_number(phone) is None
    assert await directory.tenant_of_waba("W") is None


async def test_a_registration_for_a_tenant_ingest_does_not_know_is_dead_lettered(engine: Any) -> None:
    directory = TenantDirectory(engine, cache_seconds=0)
    with pytest.raises(Exception) as caught:
        await directory.apply_account_changes([AccountChange("no-such-tenant", number(), None, True,
                                                             datetime.now(UTC))])
    assert classify(caught.value) == "deterministic"  # so the loop dead-letters it instead of retrying forever


async def test_the_loop_applies_what_was_published_up_to_its_stop(broker: str, producer: AIOKafkaProducer,
                                                                  ingest: Ingest) -> None:
    shop = f"s-{uuid.uuid4().hex[:8]}"
    await tenants(ingest.directory, shop)
    consumer = consumer_for(broker, producer, ingest)
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_drained(consumer, stop))
    await eventually(lambda: consumer.caught_up_at is not None, timeout=30, what="the consumer to join and catch up")
    phone = number()
    await announce(producer, shop, "registered", phone)
    stop.set()  # right after the broker acknowledged it: the loop must still apply it before it ends
    await asyncio.wait_for(task, timeout=15)
    assert await TenantDirectory(ingest.directory._engine, cache_seconds=0).tenant_of_number(phone) == shop  # noqa: SLF001


async def test_ingest_builds_its_loop_in_the_group_the_drain_waits_for() -> None:
    from scrm_stack.drain import GROUP_SERVICE, KNOWN_GROUPS

    consumer = accounts_consumer(Settings(), producer=None, directory=None, registry=CollectorRegistry())  # type: ignore[arg-type]
    assert consumer._service == GROUP == "ingest-accounts"  # noqa: SLF001
    assert KNOWN_GROUPS[GROUP] == (topics.EVENTS,) and GROUP_SERVICE[GROUP] == "ingest"
