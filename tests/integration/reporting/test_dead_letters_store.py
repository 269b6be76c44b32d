"""Reporting's dead-letter store against a real broker and PostgreSQL: records the real consume loop gives up
on are stored once, listed and shown per tenant, and replayed to their original topic once (or forced)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reporting.adapters.db import SCHEMA
from reporting.adapters.dead_letters import PostgresDeadLetterStore
from reporting.adapters.dead_letters_http import dead_letters_router
from reporting.bootstrap import MIGRATIONS
from reporting.dead_letters import DeadLetterMetrics, StoreDeadLetters, decode_dead_letter
from reporting.domain.dead_letters import STORE_GROUP
from scrm_common.backoff import Backoff
from scrm_common.clock import SystemClock
from scrm_common.contracts import topics
from scrm_common.contracts.envelope import decode_record
from scrm_common.db import make_engine, migrate
from scrm_common.http import KeyIntrospection, Principal, service_app
from scrm_common.kafka import BatchConsumer, ensure_topics, make_producer
from scrm_common.kafka.consumer import ConsumerMetrics, Item, dead_letter_id
from tests.integration.common.kafka_support import eventually, group_consumer, read_topic, start_broker

PARTITIONS = 2
KEYS = {"acme-key": Principal("acme", role="admin"), "acme-read": Principal("acme", role="read"),
        "acme-events": Principal("acme", role="events"), "globex-key": Principal("globex", role="admin")}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    stack = start_broker(tmp_path_factory.mktemp("broker"))
    try:
        yield stack.kafka_bootstrap
    finally:
        stack.stop_all()


@pytest.fixture(scope="module")
def database_url(postgres: Any) -> str:
    return str(postgres.new_database())


def _event(event_id: str, external_id: str, amount: Any) -> bytes:
    """A payment whose amount may be invalid: the consume loop's decoding gives up on it at once."""
    return json.dumps({"event_id": event_id, "type": "payment.succeeded", "occurred_at": "2026-11-30T10:00:00Z",
                       "contact": {"external_id": external_id},
                       "data": {"order_id": f"o-{event_id}", "amount": amount, "currency": "EUR"}}).encode()


def _at_the_limit(key: bytes, headers: list[tuple[str, bytes]], limit: int) -> bytes:
    """A value whose record, as the producer measures it, is exactly `limit` bytes: it can be produced, but
    its dead letter (one header more) cannot."""
    size = limit - 200
    for _ in range(10):
        measured = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"x" * size, headers)
        if measured == limit:
            return b"x" * size
        size += limit - measured
    raise AssertionError("no value length measures exactly the limit")


@dataclass
class World:
    bootstrap: str
    producer: AIOKafkaProducer
    engine: AsyncEngine
    store: PostgresDeadLetterStore
    registry: CollectorRegistry
    http: httpx.AsyncClient
    produced: dict[str, int]  # name -> offset on scrm.events.v1

    async def rows(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(text(
                "SELECT id, service, tenant, event_id, source_topic, source_partition, source_offset, replay_count "
                "FROM dead_letters ORDER BY id"))]

    def stored_metric(self, service: str) -> float:
        return self.registry.get_sample_value("scrm_reporting_dead_letters_stored_total", {"service": service}) or 0

    async def get(self, path: str, key: str = "acme-key", **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params, headers={"Authorization": f"Bearer {key}"})

    async def replay(self, letter_id: int, key: str = "acme-key", **params: Any) -> httpx.Response:
        return await self.http.post(f"/v1/dead-letters/{letter_id}/replay", params=params,
                                    headers={"Authorization": f"Bearer {key}"})

    async def letter_of(self, event_id: str) -> dict[str, Any]:
        body = (await self.get("/v1/dead-letters", limit=500)).json()
        found = [d for d in body["dead_letters"] if d["event_id"] == event_id]
        assert len(found) == 1, body
        return found[0]


def _keys() -> KeyIntrospection:
    """The real KeyIntrospection against a stand-in for ingest that knows KEYS (anything else: 404)."""
    def introspect(request: httpx.Request) -> httpx.Response:
        found = KEYS.get(json.loads(request.content)["api_key"])
        if found is None:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "unknown key"}})
        return httpx.Response(200, json={"tenant": found.tenant, "role": found.role, "key_id": found.key_id})

    return KeyIntrospection("http://ingest.test", internal_token="test-internal-token",
                            client=httpx.AsyncClient(transport=httpx.MockTransport(introspect)))


def _loop(bootstrap: str, producer: AIOKafkaProducer, *, group: str, topic: str, decode: Any, handle: Any,
          registry: CollectorRegistry, service: str) -> BatchConsumer[Any]:
    return BatchConsumer(consumer=group_consumer(bootstrap, group_id=group, topic=topic, max_records=50),
                         producer=producer, topic=topic, decode=decode, handle=handle,
                         metrics=ConsumerMetrics(service, registry), max_tries=2,
                         backoff=Backoff(base_seconds=0.01, max_seconds=0.05), max_records=50)


@pytest.fixture(scope="module")
async def world(broker: str, database_url: str) -> AsyncIterator[World]:
    """Poison on the event log, a real consume loop that gives up on it ("trigger-engine"), and reporting's
    dead-letter consumer storing what it gave up on; both keep running for the module."""
    await ensure_topics(broker, partitions=PARTITIONS, replication=1)
    engine = make_engine(database_url, schema=SCHEMA, pool_size=4)
    await migrate(engine, schema=SCHEMA, directory=MIGRATIONS)
    producer = await make_producer(broker, client_id="it-dead-letters")
    registry = CollectorRegistry()
    store = PostgresDeadLetterStore(engine)
    metrics = DeadLetterMetrics(registry)

    async def apply(_: Any) -> None:
        return None  # valid events would apply; only the poison matters here

    loops = [
        _loop(broker, producer, group="trigger-engine", topic=topics.EVENTS, decode=decode_record, handle=apply,
              registry=CollectorRegistry(), service="trigger_engine"),
        _loop(broker, producer, group=STORE_GROUP, topic=topics.DEAD_LETTER, decode=decode_dead_letter,
              handle=StoreDeadLetters(store=store, metrics=metrics), registry=registry, service="reporting"),
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]

    poison: dict[str, tuple[bytes | None, bytes, list[tuple[str, bytes]]]] = {
        "json": (b"acme:cust-a", _event("pay-a", "cust-a", "lots"), [("tenant", b"acme"), ("type", b"payment.succeeded"),
                                                                     ("correlation_id", b"c-1")]),
        "binary": (b"acme:cust-b", b"\x00\xffnot json", [("tenant", b"acme")]),
        "globex": (b"globex:cust-g", _event("pay-g", "cust-g", "x"), [("tenant", b"globex")]),
        "tenantless": (None, _event("pay-n", "cust-n", "x"), []),
        "twice": (b"acme:cust-t", _event("pay-t", "cust-t", "x"), [("tenant", b"acme")]),
        "race": (b"acme:cust-r", _event("pay-r", "cust-r", "x"), [("tenant", b"acme")]),
        "huge": (b"acme:cust-h", _at_the_limit(b"acme:cust-h", [("tenant", b"acme")], producer._max_request_size),  # noqa: SLF001
                 [("tenant", b"acme")]),
    }
    produced = {}
    for name, (key, value, headers) in poison.items():
        sent = await producer.send_and_wait(topics.EVENTS, key=key, value=value, headers=headers, partition=0)
        produced[name] = sent.offset
    app = service_app("reporting under test", "0")
    app.include_router(dead_letters_router(store=store, keys=_keys(), producer=producer, clock=SystemClock(),
                                           metrics=metrics))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://reporting") as http:
        world = World(broker, producer, engine, store, registry, http, produced)
        await eventually(lambda: _count(world, len(poison)), timeout=60, what="every poison record stored")
        try:
            yield world
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(task, timeout=15)
            await producer.stop()
            await engine.dispose()


async def _count(world: World, n: int) -> bool:
    return len(await world.rows()) >= n


async def test_each_dead_letter_is_stored_once_with_where_it_came_from(world: World) -> None:
    rows = await world.rows()
    by_offset = {r["source_offset"]: r for r in rows if r["source_topic"] == topics.EVENTS}
    assert set(world.produced.values()) <= set(by_offset)
    assert len(rows) == len(world.produced)
    assert by_offset[world.produced["json"]]["tenant"] == "acme"
    assert by_offset[world.produced["tenantless"]]["tenant"] is None
    assert world.stored_metric(by_offset[world.produced["json"]]["service"] or "unknown") >= 1

    # Redelivery: the same dead letters read again by a fresh group of the store change nothing.
    again = await read_topic(world.bootstrap, topics.DEAD_LETTER, partitions=PARTITIONS)
    items = [i for i in (_item(r) for r in again) if i is not None]
    assert len(items) >= len(rows)
    registry = CollectorRegistry()
    await StoreDeadLetters(store=world.store, metrics=DeadLetterMetrics(registry))(items)
    assert await world.rows() == rows
    assert not [s for s in registry.collect() for sample in s.samples
                if sample.name == "scrm_reporting_dead_letters_stored_total" and sample.value], "nothing newly stored"


def _item(record: ConsumerRecord) -> Any:
    decoded = decode_dead_letter(record)
    return None if decoded is None else Item(record, decoded)


async def test_a_tenant_lists_its_own_dead_letters_newest_first_and_pages_through_them(world: World) -> None:
    body = (await world.get("/v1/dead-letters")).json()
    letters = body["dead_letters"]
    assert {d["event_id"] for d in letters} >= {"pay-a", "pay-t", "pay-r"}
    assert "pay-g" not in {d["event_id"] for d in letters}
    assert "pay-n" not in {d["event_id"] for d in letters}, "a dead letter without a tenant is nobody's"
    assert [d["id"] for d in letters] == sorted((d["id"] for d in letters), reverse=True)
    globex = (await world.get("/v1/dead-letters", key="globex-key")).json()["dead_letters"]
    assert [d["event_id"] for d in globex] == ["pay-g"]

    first = (await world.get("/v1/dead-letters", limit=2)).json()
    assert len(first["dead_letters"]) == 2 and first["next_cursor"] is not None
    rest = (await world.get("/v1/dead-letters", limit=500, cursor=first["next_cursor"])).json()
    assert [d["id"] for d in first["dead_letters"] + rest["dead_letters"]] == [d["id"] for d in letters]
    assert rest["next_cursor"] is None

    typed = (await world.get("/v1/dead-letters", type="payment.succeeded", limit=500)).json()["dead_letters"]
    assert {d["event_id"] for d in typed} == {d["event_id"] for d in letters if d["event_type"] == "payment.succeeded"}
    service = letters[0]["service"]
    if service is not None:
        same = (await world.get("/v1/dead-letters", service=service, limit=500)).json()["dead_letters"]
        assert {d["id"] for d in same} == {d["id"] for d in letters if d["service"] == service}
        assert (await world.get("/v1/dead-letters", service="no-such-service")).json()["dead_letters"] == []


async def test_show_gives_the_error_and_the_original_record(world: World) -> None:
    letter = await world.letter_of("pay-a")
    body = (await world.get(f"/v1/dead-letters/{letter['id']}")).json()
    assert body["error"] and "amount" in body["error"]
    assert body["source_topic"] == topics.EVENTS and body["source_offset"] == world.produced["json"]
    original = body["original"]
    assert (original["key"], original["key_encoding"]) == ("acme:cust-a", "utf-8")
    assert original["value_encoding"] == "json"
    assert original["value"] == json.loads(_event("pay-a", "cust-a", "lots"))
    assert [(h["name"], h["value"]) for h in original["headers"]] == [
        ("tenant", "acme"), ("type", "payment.succeeded"), ("correlation_id", "c-1")]

    binary = next(d for d in (await world.get("/v1/dead-letters", limit=500)).json()["dead_letters"]
                  if d["source_offset"] == world.produced["binary"])
    shown = (await world.get(f"/v1/dead-letters/{binary['id']}")).json()["original"]
    assert shown["value_encoding"] == "base64"
    assert base64.b64decode(shown["value"]) == b"\x00\xffnot json"


@pytest.mark.parametrize(("path", "key", "status", "code"), [
    ("/v1/dead-letters", None, 401, "unauthorized"),
    ("/v1/dead-letters/999999", "acme-key", 404, "not_found"),
    ("/v1/dead-letters/0", "acme-key", 422, "invalid_request"),
    ("/v1/dead-letters/99999999999999999999", "acme-key", 422, "invalid_request"),
    ("/v1/dead-letters?cursor=abc", "acme-key", 422, "invalid_request"),
    ("/v1/dead-letters?service=a%00b", "acme-key", 422, "invalid_request"),
])
async def test_bad_reads_answer_in_the_documented_error_body(world: World, path: str, key: str | None, status: int,
                                                             code: str) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = await world.http.get(path, headers=headers)
    assert resp.status_code == status
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json()["error"]["code"] == code


async def test_another_tenants_dead_letter_is_not_found(world: World) -> None:
    globex = (await world.get("/v1/dead-letters", key="globex-key")).json()["dead_letters"][0]
    assert (await world.get(f"/v1/dead-letters/{globex['id']}")).status_code == 404
    resp = await world.replay(globex["id"])
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


async def test_replay_republishes_the_original_record_once_unless_forced(world: World) -> None:
    letter = await world.letter_of("pay-t")
    refused = await world.replay(letter["id"], key="acme-read")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert (await world.replay(letter["id"], key="acme-events")).status_code == 403
    assert (await world.get(f"/v1/dead-letters/{letter['id']}", key="acme-events")).status_code == 403
    assert (await world.get(f"/v1/dead-letters/{letter['id']}", key="acme-read")).status_code == 200

    first = await world.replay(letter["id"])
    assert first.status_code == 200, first.text
    place = first.json()["republished"]
    assert place["topic"] == topics.EVENTS
    assert first.json()["dead_letter"]["replay_count"] == 1 and first.json()["dead_letter"]["replayed_at"]

    records = await read_topic(world.bootstrap, topics.EVENTS, partitions=PARTITIONS)
    again = next(r for r in records if (r.partition, r.offset) == (place["partition"], place["offset"]))
    assert (again.key, again.value) == (b"acme:cust-t", _event("pay-t", "cust-t", "x"))
    assert list(again.headers) == [("tenant", b"acme")], "the original headers, without dead_letter"

    second = await world.replay(letter["id"])
    assert second.status_code == 409 and second.json()["error"]["code"] == "already_replayed"
    forced = await world.replay(letter["id"], force="true")
    assert forced.status_code == 200 and forced.json()["dead_letter"]["replay_count"] == 2
    replayed = (await world.get("/v1/dead-letters", replayed="true", limit=500)).json()["dead_letters"]
    assert letter["id"] in {d["id"] for d in replayed}
    assert world.registry.get_sample_value("scrm_reporting_dead_letters_replayed_total",
                                           {"topic": topics.EVENTS}) == 2

    # Still poison: the consume loop gives up on the republished record again, a new dead letter of its own.
    async def redead() -> list[dict[str, Any]]:
        return [r for r in await world.rows() if (r["source_partition"], r["source_offset"]) ==
                (place["partition"], place["offset"]) and r["source_topic"] == topics.EVENTS]

    rows = await eventually(redead, timeout=30, what="the replayed record dead-lettered again")
    assert rows[0]["event_id"] == "pay-t" and rows[0]["replay_count"] == 0


async def test_two_replays_at_once_publish_once(world: World) -> None:
    letter = await world.letter_of("pay-r")
    answers = await asyncio.gather(world.replay(letter["id"]), world.replay(letter["id"]))
    assert sorted(a.status_code for a in answers) == [200, 409]
    shown = (await world.get(f"/v1/dead-letters/{letter['id']}")).json()
    assert shown["replay_count"] == 1


async def test_a_dead_letter_written_twice_is_stored_once(world: World) -> None:
    meta = json.dumps({"topic": topics.EVENTS, "partition": 1, "offset": 424242, "error": "boom", "tries": 5,
                       "service": "segmenter", "failure": "exhausted",
                       "at": datetime(2026, 11, 30, 12, tzinfo=UTC).isoformat()}).encode()
    for _ in range(2):
        await world.producer.send_and_wait(topics.DEAD_LETTER, key=b"acme:cust-w", value=_event("pay-w", "cust-w", 1),
                                           headers=[("tenant", b"acme"), ("dead_letter", meta)], partition=0)

    async def stored() -> list[dict[str, Any]]:
        return [r for r in await world.rows() if r["source_offset"] == 424242]

    await eventually(stored, timeout=30, what="the segmenter's dead letter stored")
    shown = await world.letter_of("pay-w")
    assert (shown["service"], shown["failure"], shown["tries"]) == ("segmenter", "exhausted", 5)
    assert shown["dead_lettered_at"].startswith("2026-11-30T12:00:00")
    # The duplicate lies behind the first in the same partition: once the store read past it, it is one row.
    marker = _event("pay-m", "cust-m", "x")
    await world.producer.send_and_wait(topics.DEAD_LETTER, key=b"acme:cust-m", value=marker, headers=[
        ("tenant", b"acme"), ("dead_letter", meta.replace(b"424242", b"424243"))], partition=0)
    await eventually(lambda: _has_offset(world, 424243), timeout=30, what="the marker stored")
    assert len(await stored()) == 1


async def _has_offset(world: World, offset: int) -> bool:
    return any(r["source_offset"] == offset for r in await world.rows())



def _dead_letter_of(value: bytes, *, timestamp: int, offset: int = 777) -> tuple[bytes, bytes]:
    """The value and `dead_letter` header the consume loop writes for a record at a fixed place."""
    record = ConsumerRecord(topic=topics.EVENTS, partition=1, offset=offset, timestamp=timestamp, timestamp_type=0,
                            key=b"acme:cust-o", value=value, checksum=None, serialized_key_size=0,
                            serialized_value_size=0, headers=())
    meta = {"id": dead_letter_id("trigger-engine", record), "topic": topics.EVENTS, "partition": 1, "offset": offset,
            "error": "ValueError: bad", "tries": 1, "service": "trigger-engine", "failure": "deterministic",
            "at": datetime.fromtimestamp(timestamp / 1000, UTC).isoformat()}
    return value, json.dumps(meta).encode()


async def test_a_new_record_at_an_old_offset_is_stored_and_the_same_one_again_is_not(world: World) -> None:
    """The memory-only broker starts its offsets at 0 again on every `make run`: two records at one place
    are two dead letters (their ids differ); the same record dead-lettered twice is still one."""
    first = _dead_letter_of(_event("pay-o1", "cust-o", "x"), timestamp=1_764_000_000_000)
    after_restart = _dead_letter_of(_event("pay-o2", "cust-o", "y"), timestamp=1_764_900_000_000)
    for value, meta in (first, after_restart, first):
        await world.producer.send_and_wait(topics.DEAD_LETTER, key=b"acme:cust-o", value=value,
                                           headers=[("tenant", b"acme"), ("dead_letter", meta)], partition=1)

    async def at_the_place() -> list[dict[str, Any]]:
        return [r for r in await world.rows() if (r["source_partition"], r["source_offset"]) == (1, 777)]

    await eventually(lambda: _len_at_least(at_the_place(), 2), timeout=30, what="both records at offset 777")
    # The repeat lies behind both in the same partition: once a marker behind it is stored, it was read.
    marker = _dead_letter_of(_event("pay-o3", "cust-o", "z"), timestamp=1_764_000_000_000, offset=778)
    await world.producer.send_and_wait(topics.DEAD_LETTER, key=b"acme:cust-o", value=marker[0],
                                       headers=[("tenant", b"acme"), ("dead_letter", marker[1])], partition=1)
    await eventually(lambda: _has_offset(world, 778), timeout=30, what="the marker stored")
    assert sorted(r["event_id"] for r in await at_the_place()) == ["pay-o1", "pay-o2"]
    assert {d["event_id"] for d in (await world.get("/v1/dead-letters", limit=500)).json()["dead_letters"]} >= {
        "pay-o1", "pay-o2"}


async def _len_at_least(rows: Any, n: int) -> bool:
    return len(await rows) >= n


async def test_a_record_too_large_to_keep_whole_is_shown_without_its_value_and_not_replayed(world: World) -> None:
    rows = [r for r in await world.rows() if r["source_offset"] == world.produced["huge"]
            and r["source_topic"] == topics.EVENTS and r["source_partition"] == 0]
    assert len(rows) == 1
    letters = (await world.get("/v1/dead-letters", limit=500)).json()["dead_letters"]
    listed = next(d for d in letters if d["id"] == rows[0]["id"])
    assert listed["truncated"] is True
    assert not any(d["truncated"] for d in letters if d["id"] != rows[0]["id"])
    body = (await world.get(f"/v1/dead-letters/{listed['id']}")).json()
    huge = _at_the_limit(b"acme:cust-h", [("tenant", b"acme")], world.producer._max_request_size)  # noqa: SLF001
    original = body["original"]
    assert (original["value"], original["value_encoding"], original["truncated"]) == (None, "none", True)
    assert (original["value_size"], original["value_sha256"]) == (len(huge), hashlib.sha256(huge).hexdigest())
    assert (original["key"], [(h["name"], h["value"]) for h in original["headers"]]) == (
        "acme:cust-h", [("tenant", "acme")])
    assert body["error"].startswith("not a valid event")

    for force in ("false", "true"):
        resp = await world.replay(listed["id"], force=force)
        assert resp.status_code == 409 and resp.json()["error"]["code"] == "not_replayable", resp.text
        assert "too large" in resp.json()["error"]["message"]
    assert (await world.get(f"/v1/dead-letters/{listed['id']}")).json()["replay_count"] == 0
