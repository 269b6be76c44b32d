"""Webhooks are verified before anything is parsed; poison on the log is dead-lettered, never blocking."""

from __future__ import annotations

import asyncio
import json
import secrets
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from scrm_common.contracts import topics
from tests.support.events import days_ago, new_order, new_phone, payment, sign, status, status_webhook
from tests.support.stack import TestStack, poll

PHONE_NUMBER_ID = "100000000000001"  # the bootstrap account of the shared stack


def _webhook(recipient: str) -> bytes:
    return status_webhook(phone_number_id=PHONE_NUMBER_ID,
                          statuses=[status("wamid.T" + secrets.token_hex(8), "read", recipient, days_ago(50))])


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "sha1=abc", "garbage"])
def test_unsigned_or_mis_signed_webhooks_are_401_and_produce_nothing(full_stack: TestStack, signature: str | None) -> None:
    before = full_stack.topic_size(topics.EVENTS)
    headers = {"Content-Type": "application/json"} | ({"X-Hub-Signature-256": signature} if signature else {})
    resp = full_stack.http.post(full_stack.url("ingest", "/v1/webhooks/whatsapp"), content=_webhook(new_phone()),
                                headers=headers)
    assert resp.status_code == 401
    assert full_stack.topic_size(topics.EVENTS) == before


def test_a_body_signed_then_altered_is_rejected(full_stack: TestStack) -> None:
    raw = _webhook(new_phone())
    signature = sign(full_stack.app_secret, raw)
    tampered = raw.replace(b'"read"', b'"sent"')
    resp = full_stack.http.post(full_stack.url("ingest", "/v1/webhooks/whatsapp"), content=tampered,
                                headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"})
    assert resp.status_code == 401


@pytest.mark.parametrize(("token", "expected"), [("right", 200), ("wrong", 403)])
def test_verification_handshake_echoes_the_challenge_only_for_the_right_token(
        full_stack: TestStack, token: str, expected: int) -> None:
    verify = full_stack.verify_token if token == "right" else "nope"
    resp = full_stack.http.get(full_stack.url("ingest", "/v1/webhooks/whatsapp"),
                               params={"hub.mode": "subscribe", "hub.verify_token": verify, "hub.challenge": "1158201444"})
    assert resp.status_code == expected
    if expected == 200:
        assert resp.text == "1158201444"


def test_poison_on_the_event_log_goes_to_dead_letters_and_the_partition_keeps_flowing(full_stack: TestStack) -> None:
    phone = new_phone()
    key = f"demo:{phone}".encode()

    async def produce_and_read_dead_letters() -> list[dict]:  # type: ignore[type-arg]
        producer = AIOKafkaProducer(bootstrap_servers=full_stack.stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topics.EVENTS, key=key, value=b"\x00not json at all",
                                         headers=[("tenant", b"demo")])
            await producer.send_and_wait(topics.EVENTS, key=key, value=json.dumps({"type": "payment.succeeded"}).encode(),
                                         headers=[("tenant", b"demo")])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topics.DEAD_LETTER, bootstrap_servers=full_stack.stack.kafka_bootstrap,
                                    auto_offset_reset="earliest", group_id=None)
        await consumer.start()
        found: list[dict] = []  # type: ignore[type-arg]
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline and len(found) < 2:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        if record.key == key and dict(record.headers).get("dead_letter"):
                            found.append(json.loads(dict(record.headers)["dead_letter"]))
        finally:
            await consumer.stop()
        return found

    dead = asyncio.run(produce_and_read_dead_letters())
    assert len(dead) >= 2, dead
    assert all(d["topic"] == topics.EVENTS and "error" in d for d in dead)
    # the same contact's partition still flows: a valid payment behind the poison is confirmed
    order = new_order()
    assert full_stack.post_events(payment(order_id=order, phone=phone)).status_code == 202
    poll(lambda: [m for m in full_stack.sim_messages() if m["template"] and m["template"]["parameters"][0] == order],
         timeout=30, what="the confirmation behind the poison")


def test_segmenter_knows_the_contact_after_its_payment(full_stack: TestStack) -> None:
    phone, order = new_phone(), new_order()
    assert full_stack.post_events(payment(order_id=order, phone=phone, external_id="seg-1", amount=80.0)).status_code == 202

    def features() -> dict | None:  # type: ignore[type-arg]
        resp = full_stack.http.get(full_stack.url("segmenter", "/v1/contacts/seg-1"), headers=full_stack.auth)
        return resp.json() if resp.status_code == 200 else None

    body = poll(features, timeout=30, what="the contact's features")
    assert body["features"]["orders"] == 1
    assert Decimal(str(body["features"]["spend"])) == Decimal("80.00")  # exact money, as text or number
    other = full_stack.http.get(full_stack.url("segmenter", "/v1/contacts/seg-1"),
                                headers={"Authorization": "Bearer wrong"})
    assert other.status_code == 401
