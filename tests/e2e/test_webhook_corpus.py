"""Issue 5 acceptance: every corpus webhook, SIGNED, posted to a real ingest: never a 5xx, every expected
event on the broker for the owning tenant, every skipped or repaired item moving its labelled counter."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from prometheus_client.parser import text_string_to_metric_families

from scrm_common.contracts import topics
from scrm_common.contracts.envelope import decode_event, header
from tests.corpus.webhooks.corpus import TENANT, Case, cases, labels, unmatched
from tests.support.backend import Backend
from tests.support.events import sign
from tests.support.stack import TestStack, start_stack

CASES = cases()
COUNTERS = {"skipped": "scrm_ingest_webhook_skipped_total", "repaired": "scrm_ingest_webhook_repaired_total"}


@pytest.fixture(scope="module")
def ingest_stack(backend: Backend, work_dir: Path) -> Iterator[TestStack]:
    """Ingest alone (its bootstrap number 100000000000001 and WABA 200000000000001 are the corpus's tenant)."""
    stack = start_stack(work_dir, backend, processes=("ingest",))
    yield stack
    stack.close()


def _counters(stack: TestStack) -> dict[str, Counter[tuple[str, str, str]]]:
    resp = stack.http.get(stack.url("ingest", "/metrics"))
    resp.raise_for_status()
    out: dict[str, Counter[tuple[str, str, str]]] = {kind: Counter() for kind in COUNTERS}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            for kind, name in COUNTERS.items():
                if sample.name == name:
                    key = (sample.labels["field"], sample.labels["type"], sample.labels["reason"])
                    out[kind][key] += int(sample.value)
    return out


def _on_the_broker(bootstrap: str, wanted: int, deadline_s: float = 30.0) -> list[tuple[str | None, dict[str, Any]]]:
    async def read() -> list[tuple[str | None, dict[str, Any]]]:
        consumer = AIOKafkaConsumer(topics.EVENTS, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id=None)
        await consumer.start()
        found: list[tuple[str | None, dict[str, Any]]] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + deadline_s
            while loop.time() < deadline and len(found) < wanted:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        decoded = decode_event(record.key, record.value, record.headers)
                        found.append((header(record.headers, "tenant"), decoded.event.model_dump(mode="json")))
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


def _without_routing(pattern: dict[str, Any]) -> dict[str, Any]:
    # On the broker the routing shows as the record's tenant, checked separately.
    return {k: v for k, v in pattern.items() if k != "routed_by"}


def test_every_corpus_webhook_is_answered_200_and_lands_or_is_counted(ingest_stack: TestStack) -> None:
    stack = ingest_stack
    windows: dict[str, tuple[datetime, datetime]] = {}
    failures: list[str] = []
    for case in CASES:
        before = _counters(stack)
        started = datetime.now(UTC)
        resp = stack.http.post(stack.url("ingest", "/v1/webhooks/whatsapp"), content=case.raw,
                               headers={"X-Hub-Signature-256": sign(stack.app_secret, case.raw),
                                        "Content-Type": "application/json"})
        windows[case.name] = (started, datetime.now(UTC))
        if resp.status_code != 200:
            failures.append(f"{case.name}: HTTP {resp.status_code} {resp.text[:200]}")
            continue
        if resp.json() != {"received": len(case.expect["events"])}:
            failures.append(f"{case.name}: answered {resp.json()}, expected {len(case.expect['events'])} events")
        after = _counters(stack)
        for kind in COUNTERS:
            moved = after[kind] - before[kind]
            if moved != labels(case.expect[kind]):
                failures.append(f"{case.name}: {COUNTERS[kind]} moved {dict(moved)}, expected "
                                f"{dict(labels(case.expect[kind]))}")
    assert not failures, "\n".join(failures)

    wanted = sum(len(c.expect["events"]) for c in CASES)
    records = _on_the_broker(stack.stack.kafka_bootstrap, wanted)
    assert {tenant for tenant, _ in records} == {TENANT}
    pool = [event for _, event in records]
    assert len(pool) == wanted
    for case in CASES:
        missing, pool = _claim(case, pool, windows[case.name])
        assert not missing, f"{case.name}: not on the broker: {missing}"
    assert pool == [], f"events on the broker no corpus row expected: {pool}"


def _claim(case: Case, pool: list[dict[str, Any]], window: tuple[datetime, datetime]
           ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Match a case's expected events against the broker's events; returns what is missing and what is left."""
    patterns = [_without_routing(p) for p in case.expect["events"]]
    missing, left = unmatched(patterns, pool, received=window)
    return missing, left
