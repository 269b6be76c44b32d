"""Short links through a real Tansu broker and PostgreSQL (R-T6.5, R-R4): a `ShortLink` produced on `scrm.links.v1`
is stored by the `ingest-links` loop, `GET /l/{code}` answers 302 with UTM and publishes `link.clicked` on
`scrm.events.v1`; a resume link leads to the checkout URL; tampered → 400 and nothing published; expired → 410;
unknown → 404; garbage on the topic is dead-lettered and does not block the links behind it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from ingest.adapters.kafka import EventPublisher
from ingest.adapters.links import GROUP, LinkProjection, LinkStore, decode_short_link, links_consumer
from ingest.adapters.links_http import LinkMetrics, build_links_router
from ingest.config import Settings
from ingest.domain.links import LinkRules
from scrm_common.backoff import Backoff
from scrm_common.clock import SystemClock
from scrm_common.contracts import topics
from scrm_common.contracts.events import Contact
from scrm_common.contracts.links import ShortLink
from scrm_common.kafka import BatchConsumer, ConsumerMetrics, ensure_topics, make_producer
from scrm_common.links import resume_url, short_code, sign_resume
from tests.integration.common.kafka_support import dead_letters_from, eventually, group_consumer, read_topic

PARTITIONS = 3
SECRET = "it-link-secret"
BASE = "https://wa.shop.de"
BROWSER = "Mozilla/5.0 (Linux; Android 15)"


@dataclass
class Links:
    """The running link side of ingest: its HTTP client, the loop and the metrics registry."""

    client: httpx.AsyncClient
    consumer: BatchConsumer[ShortLink]
    registry: CollectorRegistry

    def metric(self, name: str, **labels: str) -> float:
        return sum(s.value for family in self.registry.collect() for s in family.samples
                   if s.name == name and labels.items() <= s.labels.items())


@pytest.fixture(scope="module")
async def producer(broker: str) -> AsyncIterator[AIOKafkaProducer]:
    await ensure_topics(broker, partitions=PARTITIONS, replication=1)
    started = await make_producer(broker, client_id="it-links")
    yield started
    await started.stop()


@pytest.fixture
async def links(broker: str, producer: AIOKafkaProducer, engine: AsyncEngine) -> AsyncIterator[Links]:
    """The `ingest-links` loop as `links_consumer` builds it (a group of its own, the tests' short group
    timeouts) and the link routes as `ingest.main` wires them, publishing to the real broker."""
    registry, store = CollectorRegistry(), LinkStore(engine)
    consumer = BatchConsumer(
        consumer=group_consumer(broker, group_id=f"{GROUP}-{uuid.uuid4().hex[:8]}", topic=topics.LINKS,
                                max_records=100),
        producer=producer, topic=topics.LINKS, decode=decode_short_link, handle=LinkProjection(store),
        metrics=ConsumerMetrics("ingest-links", registry), max_tries=2, backoff=Backoff(0.01, 0.05),
        max_records=100, service=GROUP)
    app = FastAPI()
    app.include_router(build_links_router(store=store, publisher=EventPublisher(producer), clock=SystemClock(),
                                          metrics=LinkMetrics(registry), secret=SECRET, rules=LinkRules(),
                                          publish_timeout_seconds=10.0))
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    await eventually(lambda: consumer.caught_up_at is not None, timeout=30, what="the links loop to join")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest",
                                 headers={"User-Agent": BROWSER}) as client:
        yield Links(client, consumer, registry)
    stop.set()
    await asyncio.wait_for(task, timeout=15)


async def publish_link(producer: AIOKafkaProducer, link: ShortLink, partition: int | None = None) -> None:
    """What the trigger-engine's outbox relays: the link's JSON without nulls, keyed `<tenant>:<code>`."""
    await producer.send_and_wait(topics.LINKS, key=link.kafka_key.encode(),
                                 value=link.model_dump_json(exclude_none=True).encode(),
                                 headers=[("tenant", link.tenant.encode())], partition=partition)


async def clicks(broker: str) -> list[dict[str, Any]]:
    """Every `link.clicked` on `scrm.events.v1`."""
    records = await read_topic(broker, topics.EVENTS, partitions=PARTITIONS)
    return [e for e in (json.loads(r.value) for r in records) if e.get("type") == "link.clicked"]


def key() -> str:
    return f"cart:{uuid.uuid4().hex[:10]}:stage1"


def tracked_link(message: str) -> ShortLink:
    return ShortLink(code=short_code(SECRET, "demo", message, "tracking"), tenant="demo", kind="tracked",
                     target="https://carrier.example/track?id=42", flow="shipment", content="shipped",
                     idempotency_key=message, contact=Contact(external_id="cust-7"), created_at=datetime.now(UTC))


def resume_link(message: str, signed_at: datetime, checkout: str) -> ShortLink:
    payload = {"t": "demo", "c": "c-1", "u": checkout, "k": message, "f": "abandoned_cart", "s": "stage1"}
    return ShortLink(code=short_code(SECRET, "demo", message, "resume"), tenant="demo", kind="resume",
                     target=resume_url(BASE, sign_resume(SECRET, payload, signed_at)), flow="abandoned_cart",
                     content="stage1", idempotency_key=message, contact=Contact(external_id="cust-8"),
                     created_at=signed_at, expires_at=signed_at + timedelta(hours=24))


async def answered(links: Links, path: str, status: int) -> httpx.Response:
    """Poll `path` until it answers `status` (the loop stores the link a moment after it was produced)."""
    async def probe() -> httpx.Response | None:
        resp = await links.client.get(path)
        return resp if resp.status_code == status else None

    return await eventually(probe, timeout=20, what=f"{path} to answer {status}", interval=0.1)  # type: ignore[no-any-return]


async def test_a_produced_link_redirects_with_utm_and_the_click_lands_on_the_events_topic(
        broker: str, producer: AIOKafkaProducer, links: Links) -> None:
    message = key()
    link = tracked_link(message)
    assert (await links.client.get(f"/l/{link.code}")).status_code == 404  # not yet stored
    await publish_link(producer, link)

    resp = await answered(links, f"/l/{link.code}", 302)
    location = resp.headers["location"]
    assert location.startswith("https://carrier.example/track?")
    assert parse_qs(urlsplit(location).query) == {
        "id": ["42"], "utm_source": ["whatsapp"], "utm_medium": ["message"], "utm_campaign": ["shipment"],
        "utm_content": ["shipped"]}
    assert resp.headers["cache-control"] == "no-store" and resp.headers["referrer-policy"] == "no-referrer"

    found = await eventually(lambda: _of(clicks(broker), message), timeout=20, what="the link.clicked")
    [event] = found
    assert event["contact"] == {"external_id": "cust-7"}
    assert event["data"] == {"link_id": link.code, "url": location, "idempotency_key": message, "flow": "shipment",
                             "campaign": "shipment", "content": "shipped", "kind": "tracked"}
    assert links.metric("scrm_ingest_link_redirects_total", kind="tracked", outcome="redirected") == 1

    # The same record again (a redelivery, a retried outbox relay) changes nothing.
    await publish_link(producer, link.model_copy(update={"target": "https://elsewhere.example/"}))
    sent_at = datetime.now(UTC)
    await eventually(lambda: (links.consumer.caught_up_at or sent_at) > sent_at, timeout=20,
                     what="the loop to apply the repeated record")
    again = await links.client.get(f"/l/{link.code}")
    assert again.headers["location"] == location


async def _of(pending: Any, message: str) -> list[dict[str, Any]]:
    return [e for e in await pending if e["data"].get("idempotency_key") == message]


async def test_a_resume_link_leads_to_the_checkout_url_and_its_long_form_too(
        broker: str, producer: AIOKafkaProducer, links: Links) -> None:
    message = key()
    link = resume_link(message, datetime.now(UTC) - timedelta(minutes=31), "https://shop.example/checkout/c-1")
    await publish_link(producer, link)

    resp = await answered(links, f"/l/{link.code}", 302)
    assert resp.headers["location"].startswith("https://shop.example/checkout/c-1?utm_source=whatsapp")
    assert parse_qs(urlsplit(resp.headers["location"]).query)["utm_campaign"] == ["abandoned_cart"]
    long_form = await links.client.get(urlsplit(link.target).path)
    assert long_form.status_code == 302 and long_form.headers["location"] == resp.headers["location"]

    both = await eventually(lambda: len_at_least(_of(clicks(broker), message), 2), timeout=20, what="both clicks")
    assert {e["data"]["kind"] for e in both} == {"resume"} and len({e["event_id"] for e in both}) == 2
    assert {e["contact"]["external_id"] for e in both} == {"cust-8"}


async def len_at_least(pending: Any, n: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await pending
    return found if len(found) >= n else None


async def test_tampered_expired_and_unknown_links_get_their_pages_and_publish_nothing(
        broker: str, producer: AIOKafkaProducer, links: Links) -> None:
    fresh = resume_link(key(), datetime.now(UTC), "https://shop.example/checkout/c-2")
    expired = resume_link(key(), datetime.now(UTC) - timedelta(hours=25), "https://shop.example/checkout/c-3")
    await publish_link(producer, fresh)
    await publish_link(producer, expired)
    before = len(await clicks(broker))

    token = urlsplit(fresh.target).path.rsplit("/", 1)[-1]
    tampered = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    resp = await links.client.get(f"/r/{tampered}")
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/html")

    long_expired = await links.client.get(urlsplit(expired.target).path)
    assert long_expired.status_code == 410 and 'href="https://shop.example"' in long_expired.text
    short_expired = await answered(links, f"/l/{expired.code}", 410)
    assert "expired" in short_expired.text
    unknown = links.metric("scrm_ingest_link_redirects_total", kind="unknown", outcome="unknown")  # while polling
    assert (await links.client.get("/l/Zz9Zz9Zz")).status_code == 404
    assert (await links.client.get("/l/no-such-code!")).status_code == 404

    # Everything the broker acknowledged before is readable now: no click was published for any of them.
    assert len(await clicks(broker)) == before
    assert links.metric("scrm_ingest_link_redirects_total", outcome="tampered") == 1
    assert links.metric("scrm_ingest_link_redirects_total", outcome="expired") >= 2
    assert links.metric("scrm_ingest_link_redirects_total", kind="unknown", outcome="unknown") == unknown + 2


async def test_garbage_on_the_topic_is_dead_lettered_and_does_not_block_the_links_behind_it(
        broker: str, producer: AIOKafkaProducer, links: Links) -> None:
    garbage = f"not a link {uuid.uuid4().hex}".encode()
    await producer.send_and_wait(topics.LINKS, key=b"demo:garbage", value=garbage, partition=1)
    link = tracked_link(key())
    await publish_link(producer, link, partition=1)  # behind the garbage, in the same partition

    await answered(links, f"/l/{link.code}", 302)
    dead = await eventually(lambda: _dead(broker, garbage), timeout=20, what="the garbage's dead letter")
    assert len(dead) == 1


async def _dead(broker: str, value: bytes) -> list[Any]:
    return [r for r in await dead_letters_from(broker, topics.LINKS, partitions=PARTITIONS) if r.value == value]


async def test_ingest_builds_its_links_loop_in_the_group_the_drain_waits_for() -> None:
    from scrm_stack.drain import GROUP_SERVICE, KNOWN_GROUPS

    consumer = links_consumer(Settings(), producer=None, store=None, registry=CollectorRegistry())  # type: ignore[arg-type]
    assert consumer._service == GROUP == "ingest-links"  # noqa: SLF001
    assert KNOWN_GROUPS[GROUP] == (topics.LINKS,) and GROUP_SERVICE[GROUP] == "ingest"


async def test_a_code_collision_keeps_the_first_link_and_tells_the_operator(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    """Two messages whose HMAC codes collide (forced here): the first keeps the code, the second is dropped and
    logged as a collision; a redelivery of the first is not a collision."""
    first, second = tracked_link(key()), tracked_link(key())
    second = second.model_copy(update={"code": first.code, "target": "https://elsewhere.example/"})
    store = LinkStore(engine)
    assert await store.save([first]) == 1
    with caplog.at_level("ERROR", logger="ingest.adapters.links"):
        assert await store.save([first]) == 0
        assert not [r for r in caplog.records if "collision" in r.getMessage()]
        assert await store.save([second]) == 0
    [logged] = [r.getMessage() for r in caplog.records if "collision" in r.getMessage()]
    assert first.idempotency_key in logged and second.idempotency_key in logged, logged  # type: ignore[operator]
    kept = await store.by_code(first.code)
    assert kept is not None and kept.target == first.target
