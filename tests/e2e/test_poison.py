"""A poison record never stalls others, and what cannot be processed is refused at the door (issue 6, item 4).

Poison is produced straight to `scrm.events.v1` (as a shop producing to Kafka may), each record keyed
like the good payment posted right after it, so it sits in that payment's partition, just ahead of it.
The good payments' time from POST to their confirmation at the simulator is compared with a baseline
round without poison, in the same stack: the poison may add at most POISON_BUDGET seconds to the
median and to the slowest confirmation (+ NOISE for a shared, busy test machine).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from scrm_common.contracts import topics
from tests.support.events import iso, new_id, new_order, new_phone, payment
from tests.support.stack import TestStack, poll, start_stack

ROUND = 12  # good payments per round
POISON_BUDGET = 1.0  # seconds the poison may add (issue 6)
NOISE = 0.5  # absolute allowance for the slowest one only: two cores shared by the whole suite
PACE = 0.1  # seconds between two good payments: a steady stream, not one burst
# Every consumer group of the event log: each one dead-letters what it cannot read for itself.
EVENT_GROUPS = {"trigger-engine", "segmenter", "reporting", "sender-evidence"}


@pytest.fixture(scope="module")
def stack(backend, work_dir: Path) -> Iterator[TestStack]:  # type: ignore[no-untyped-def]
    """A stack of its own: the dead letters made here must not surprise the other e2e modules."""
    started = start_stack(work_dir, backend)
    yield started
    started.close()


def _confirmations(stack: TestStack) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for message in stack.sim_messages():
        template = message["template"]
        if template and template["name"] == "order_confirmation":
            out.setdefault(template["parameters"][0], []).append(message)
    return out


def _poison(kind: str, phone: str, *, confirmed: dict[str, Any] | None = None) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of one poison record for the contact `phone`; no `type` header, so every group parses it."""
    headers = [("tenant", b"demo")]
    good = payment(order_id=new_order(), phone=phone)
    if kind == "undecodable":
        return b"\xff\xfe not even UTF-8 \x00", headers
    if kind == "invalid":  # decodes (JSON, tenant), fails validation: a payment without its order
        del good["data"]["order_id"]
        return json.dumps(good).encode(), headers
    if kind == "nul-name":  # accepted by ingest before issue 6, then refused by PostgreSQL (22P05)
        good["contact"]["name"] = "An\u0000na"
        return json.dumps(good).encode(), headers
    if kind == "year-9999":  # accepted before, then OverflowError in the trigger-engine and the segmenter
        good["occurred_at"] = "9999-12-31T23:59:59Z"
        return json.dumps(good).encode(), headers
    if kind == "int32-overflow":  # once a DataError in the sender's 32-bit error_code column; now refused on decode
        assert confirmed is not None
        status = {"event_id": new_id("st"), "type": "message.status", "occurred_at": iso(datetime.now().astimezone()),
                  "contact": {"phone": phone},
                  "data": {"message_id": confirmed["wamid"], "status": "failed", "error_code": 2**40,
                           "idempotency_key": confirmed["biz_opaque_callback_data"]}}
        return json.dumps(status).encode(), headers
    raise AssertionError(kind)


DECODE_POISON = ("undecodable", "invalid", "nul-name", "year-9999")


class Round:
    """Posts good payments one by one, optionally each behind a poison record in its own partition."""

    def __init__(self, stack: TestStack) -> None:
        self.stack = stack
        self.posted: dict[str, float] = {}  # order → wall time just before its POST
        self.poison: list[tuple[bytes, str]] = []  # (key, kind)

    async def run(self, count: int, poison: Callable[[int, str], tuple[str, bytes, list[tuple[str, bytes]]]] | None,
                  producer: AIOKafkaProducer) -> None:
        for i in range(count):
            phone, order = new_phone(), new_order()
            if poison is not None:
                kind, value, headers = poison(i, phone)
                key = f"demo:{phone}".encode()
                await producer.send_and_wait(topics.EVENTS, key=key, value=value, headers=headers)
                self.poison.append((key, kind))
            self.posted[order] = time.time()
            resp = await asyncio.to_thread(self.stack.post_events, payment(order_id=order, phone=phone))
            assert resp.status_code == 202, resp.text
            await asyncio.sleep(PACE)

    def latencies(self) -> list[float]:
        """Seconds from each POST to its confirmation at the simulator (which stamps what it receives)."""
        confirmed = poll(lambda: _all_confirmed(self.stack, self.posted), timeout=60,
                         what="every good payment's confirmation")
        return [datetime.fromisoformat(confirmed[o][0]["received_at"]).timestamp() - at
                for o, at in self.posted.items()]


def _all_confirmed(stack: TestStack, orders: dict[str, float]) -> dict[str, list[dict[str, Any]]] | None:
    confirmations = _confirmations(stack)
    return confirmations if all(o in confirmations for o in orders) else None


async def _produce(stack: TestStack, body: Callable[[AIOKafkaProducer], Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await body(producer)
    finally:
        await producer.stop()


async def _dead_letters(bootstrap: str, keys: set[bytes], *, want: Callable[[list[Any]], bool],
                        timeout: float = 120) -> list[tuple[bytes, dict[str, Any]]]:
    """(key, dead_letter header) of every dead letter for `keys`, read until `want(found)` or the deadline."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    found: list[tuple[bytes, dict[str, Any]]] = []
    try:
        partitions = consumer.partitions_for_topic(topics.DEAD_LETTER) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topic metadata
            partitions = consumer.partitions_for_topic(topics.DEAD_LETTER) or set()
        tps = [TopicPartition(topics.DEAD_LETTER, p) for p in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not want(found):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    meta = dict(record.headers or ()).get("dead_letter")
                    if record.key in keys and meta is not None:
                        found.append((record.key, json.loads(meta)))
    finally:
        await consumer.stop()
    return found


def test_poison_between_good_payments_adds_at_most_a_second_and_each_poison_is_dead_lettered(stack: TestStack) -> None:
    async def scenario() -> tuple[list[float], list[float], Round, Round]:
        warm = Round(stack)  # first sends of a fresh stack are slower (templates, connections)
        await _produce(stack, lambda p: warm.run(3, None, p))
        warm.latencies()
        baseline = Round(stack)
        await _produce(stack, lambda p: baseline.run(ROUND, None, p))
        base = baseline.latencies()
        sample = next(iter(_confirmations(stack).values()))[0]  # a real send, to forge a failed status for

        def poison(i: int, phone: str) -> tuple[str, bytes, list[tuple[str, bytes]]]:
            kind = [*DECODE_POISON, "int32-overflow"][i % (len(DECODE_POISON) + 1)]
            value, headers = _poison(kind, phone, confirmed=sample)
            return kind, value, headers

        poisoned = Round(stack)
        await _produce(stack, lambda p: poisoned.run(ROUND, poison, p))
        return base, poisoned.latencies(), baseline, poisoned

    base, with_poison, baseline, poisoned = asyncio.run(scenario())
    figures = (f"baseline median {statistics.median(base):.3f}s max {max(base):.3f}s; with poison median "
               f"{statistics.median(with_poison):.3f}s max {max(with_poison):.3f}s")
    print(figures)  # noqa: T201 - the figures the issue asks for, shown with -s

    # Every good payment is confirmed exactly once, poison or not.
    confirmations = _confirmations(stack)
    for order in [*baseline.posted, *poisoned.posted]:
        assert len(confirmations[order]) == 1, (order, confirmations[order])
    # The poison adds at most a second: to the median, and (with a little noise allowance) to the slowest.
    assert statistics.median(with_poison) <= statistics.median(base) + POISON_BUDGET, figures
    assert max(with_poison) <= max(base) + POISON_BUDGET + NOISE, figures

    # Every poison record is dead-lettered, at once, by each consumer group that cannot process it.
    expected = {key: EVENT_GROUPS for key, _ in poisoned.poison}  # every kind is refused by every reader's decode

    def complete(found: list[Any]) -> bool:
        seen: dict[bytes, set[str]] = {}
        for key, meta in found:
            seen.setdefault(key, set()).add(meta.get("service"))
        return all(seen.get(key, set()) >= groups for key, groups in expected.items())

    found = asyncio.run(_dead_letters(stack.stack.kafka_bootstrap, set(expected), want=complete))
    seen: dict[bytes, set[str]] = {}
    for key, meta in found:
        seen.setdefault(key, set()).add(meta.get("service"))
    missing = {(key, dict(poisoned.poison)[key]): sorted(groups - seen.get(key, set()))
               for key, groups in expected.items() if not seen.get(key, set()) >= groups}
    assert not missing, f"dead letters missing (key, kind) → groups: {missing}"
    kinds = dict(poisoned.poison)
    for key, meta in found:
        print(f"{kinds[key]:>15} {meta['service']:>15} {meta['failure']} tries={meta['tries']}: {meta['error'][:110]}")  # noqa: T201
    assert all(meta["topic"] == topics.EVENTS and meta["failure"] == "deterministic" and meta["at"]
               for _, meta in found), found
    assert all(meta["tries"] <= 1 for _, meta in found), "deterministic: never retried"
    per_record = Counter((key, meta["service"]) for key, meta in found)
    assert set(per_record.values()) == {1}, f"each group dead-letters each poison once: {per_record}"


def _event(phone: str, **changes: Any) -> dict[str, Any]:
    return {**payment(order_id=new_order(), phone=phone), **changes}


def _deep(levels: int) -> bytes:
    return b'{"events": [' + b'{"a":' * levels + b"1" + b"}" * levels + b"]}"


PHONES = [new_phone() for _ in range(4)]
DOOR = [  # (rule, raw body, error code, index, field, the contact whose key must not appear on the log)
    ("control character", json.dumps(_event(PHONES[0], contact={"phone": PHONES[0], "name": "An\u0000na"})).encode(),
     "invalid_events", 0, "contact.name", PHONES[0]),
    ("time range", json.dumps({"events": [_event(PHONES[1]), _event(PHONES[1], occurred_at="9999-12-31T23:59:59Z")]})
     .encode(), "invalid_events", 1, "occurred_at", PHONES[1]),
    ("birthday range", json.dumps(_event(PHONES[2], contact={"phone": PHONES[2], "birthday": "0001-01-01"})).encode(),
     "invalid_events", 0, "contact.birthday", PHONES[2]),
    ("depth (966 levels gave a text/plain 500)", _deep(966), None, None, None, None),
    ("duplicate key", b'{"events": [' + json.dumps(_event(PHONES[3])).encode()[:-1] + b', "type": "payment.failed"}]}',
     "invalid_events", 0, "type", PHONES[3]),
]


async def _keys_on(bootstrap: str, topic: str) -> set[bytes]:
    """The key of every record in `topic` up to the high watermark, read without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - fresh topic metadata
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        keys: set[bytes] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                keys.update(r.key for r in records if r.key is not None)
            behind = 0
            for tp in tps:
                high = consumer.highwater(tp)
                behind += 1 if high is None else max(0, high - await consumer.position(tp))
            if behind == 0:
                return keys
        raise AssertionError(f"could not read {topic} to its end")
    finally:
        await consumer.stop()


@pytest.mark.parametrize(("rule", "raw", "code", "index", "field", "phone"), DOOR, ids=[d[0] for d in DOOR])
def test_each_door_rule_answers_422_with_the_documented_body_and_publishes_nothing(
        stack: TestStack, rule: str, raw: bytes, code: str | None, index: int | None, field: str | None,
        phone: str | None) -> None:
    resp = stack.http.post(stack.url("ingest", "/v1/events"), content=raw,
                           headers={**stack.auth, "Content-Type": "application/json"})
    assert resp.status_code == 422, (rule, resp.text[:300])
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error", "errors"} and set(body["error"]) == {"code", "message"}
    assert all(set(e) == {"index", "field", "reason"} and e["reason"] for e in body["errors"]), body
    if code is None:  # how deep the parser gets depends on the server's stack: either way, named and 422
        assert "nested deeper than" in body["errors"][0]["reason"], body
    else:
        assert body["error"]["code"] == code
        assert (body["errors"][0]["index"], body["errors"][0]["field"]) == (index, field), body
    if phone is not None:  # a 202 comes only after the broker has the events: after a 422, none may be there
        assert f"demo:{phone}".encode() not in asyncio.run(_keys_on(stack.stack.kafka_bootstrap, topics.EVENTS))
