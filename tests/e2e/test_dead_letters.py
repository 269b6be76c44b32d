"""Dead letters are visible and recoverable on the running stack: a poison event on the log shows up in
`GET /v1/dead-letters` and `scrm dead-letters list` with the service, the error and the original record, is a
line of its contact's decision story, and `scrm dead-letters replay` republishes it to the original topic."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from scrm_common.contracts import topics
from tests.support.events import contact_created, new_id, new_phone
from tests.support.stack import TestStack, poll, start_stack

SCRM = Path(sys.executable).with_name("scrm")
TENANT = "demo"  # the stack's bootstrap tenant, whose key the stack made
CONSUMERS = {"trigger-engine", "reporting"}  # the groups of this stack that read payments


@pytest.fixture(scope="module")
def stack(backend, work_dir: Path) -> Iterator[TestStack]:  # type: ignore[no-untyped-def]
    started = start_stack(work_dir, backend, processes=("ingest", "trigger-engine", "reporting"))
    yield started
    started.close()


def _produce(bootstrap: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            sent = await producer.send_and_wait(topics.EVENTS, key=key, value=value, headers=headers)
            return sent.partition, sent.offset
        finally:
            await producer.stop()

    return asyncio.run(go())


def _record_at(bootstrap: str, topic: str, partition: int, offset: int) -> ConsumerRecord:
    async def go() -> ConsumerRecord:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            async with asyncio.timeout(15):
                while True:
                    for record in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                        if record.offset == offset:
                            return record
        finally:
            await consumer.stop()

    return asyncio.run(go())


def _scrm(stack: TestStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCRM_API_KEY": stack.api_key, "SCRM_REPORTING_URL": stack.url("reporting", ""),
           "COLUMNS": "250"}
    return subprocess.run([str(SCRM), "dead-letters", *args], capture_output=True, text=True, env=env, timeout=30,
                          check=False)


def _dead_letters_of(stack: TestStack, partition: int, offset: int) -> list[dict[str, Any]]:
    resp = stack.http.get(stack.url("reporting", "/v1/dead-letters"), params={"limit": 500}, headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return [d for d in resp.json()["dead_letters"] if d["source_topic"] == topics.EVENTS
            and (d["source_partition"], d["source_offset"]) == (partition, offset)]


def _story(stack: TestStack, contact: str) -> list[dict[str, Any]]:
    resp = stack.http.get(stack.url("trigger-engine", f"/v1/contacts/{contact}/decisions"), headers=stack.auth)
    assert resp.status_code == 200, resp.text
    return resp.json()["decisions"]


def test_a_poison_event_is_seen_in_the_api_the_cli_and_the_story_and_replayed_to_its_topic(stack: TestStack) -> None:
    customer, phone = new_id("cust"), new_phone()
    assert stack.post_events(contact_created(phone=phone, external_id=customer, name="Anna")).status_code == 202
    poll(lambda: _story(stack, customer), timeout=30, what="the contact known to the trigger-engine")

    # A payment of the known contact that no consumer can read: its amount is no number.
    event_id = new_id("pay")
    key = f"{TENANT}:{customer}".encode()
    value = json.dumps({"event_id": event_id, "type": "payment.succeeded", "occurred_at": "2026-11-30T10:00:00Z",
                        "contact": {"external_id": customer, "phone": phone},
                        "data": {"order_id": "A1", "amount": "lots", "currency": "EUR"}}).encode()
    headers = [("tenant", TENANT.encode()), ("type", b"payment.succeeded")]
    partition, offset = _produce(stack.stack.kafka_bootstrap, key, value, headers)

    letters = poll(lambda: [d for d in _dead_letters_of(stack, partition, offset) if d["service"] == "trigger-engine"],
                   timeout=30, what="the trigger-engine's dead letter listed")
    letter = letters[0]
    assert (letter["event_id"], letter["event_type"], letter["contact"]) == (event_id, "payment.succeeded", customer)
    assert letter["failure"] == "deterministic" and "amount" in letter["error"]
    assert {d["service"] for d in _dead_letters_of(stack, partition, offset)} <= CONSUMERS
    shown = stack.http.get(stack.url("reporting", f"/v1/dead-letters/{letter['id']}"), headers=stack.auth).json()
    assert shown["original"]["key"] == key.decode()
    assert shown["original"]["value"] == json.loads(value)
    assert [(h["name"], h["value"]) for h in shown["original"]["headers"]] == [(n, v.decode()) for n, v in headers]

    # The contact's story tells it, found by any of the contact's identities.
    lines = poll(lambda: [d for d in _story(stack, phone) if d["outcome"] == "dead_lettered"], timeout=30,
                 what="the dead letter in the contact's story")
    assert {d["event_id"] for d in lines} == {event_id}
    told = poll(lambda: [d for d in _story(stack, customer) if d["outcome"] == "dead_lettered"
                         and d["reason"].startswith("trigger-engine gave up on it (deterministic)")], timeout=30,
                what="the trigger-engine's dead letter in the story")
    assert letter["error"] in told[0]["reason"]

    # The CLI lists it (a table for people, JSON for scripts).
    table = _scrm(stack, "list")
    assert table.returncode == 0, table.stderr
    assert event_id in table.stdout and str(letter["id"]) in table.stdout
    listed = _scrm(stack, "list", "--json")
    assert letter["id"] in {d["id"] for d in json.loads(listed.stdout)["dead_letters"]}

    # Replay republishes the original record to its topic, once unless forced.
    replayed = _scrm(stack, "replay", str(letter["id"]), "--json")
    assert replayed.returncode == 0, replayed.stderr
    place = json.loads(replayed.stdout)["republished"]
    assert place["topic"] == topics.EVENTS
    again = _record_at(stack.stack.kafka_bootstrap, topics.EVENTS, place["partition"], place["offset"])
    assert (again.key, again.value, list(again.headers)) == (key, value, headers)
    refused = _scrm(stack, "replay", str(letter["id"]))
    assert refused.returncode == 1 and "already_replayed" in refused.stderr
    # Still unreadable, so it is dead-lettered again: a new dead letter of the republished record.
    poll(lambda: _dead_letters_of(stack, place["partition"], place["offset"]), timeout=30,
         what="the replayed record dead-lettered again")
