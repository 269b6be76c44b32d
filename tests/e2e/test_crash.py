"""A crash loses nothing and duplicates nothing: kill -9 the sender, then the trigger-engine, mid-stream."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.events import new_phone, payment
from tests.support.stack import TestStack, poll, start_stack

ORDERS = 1000
BATCH = 10


@pytest.fixture
def crash_stack(backend, work_dir: Path) -> Iterator[TestStack]:  # type: ignore[no-untyped-def]
    stack = start_stack(work_dir, backend,
                        processes=("ingest", "trigger-engine", "sender", "simulator"))
    yield stack
    stack.close()


def _confirmed_orders(stack: TestStack) -> Counter[str]:
    return Counter(m["template"]["parameters"][0] for m in stack.sim_messages()
                   if m["template"] and m["template"]["name"] == "order_confirmation")


def _post_all(stack: TestStack, orders: list[str], posted: list[int], errors: list[str]) -> None:
    for start in range(0, len(orders), BATCH):
        events = [payment(order_id=o, phone=new_phone()) for o in orders[start:start + BATCH]]
        resp = stack.post_events({"events": events})
        if resp.status_code != 202:
            errors.append(f"{resp.status_code} {resp.text[:200]}")
        posted.append(len(events))


@pytest.mark.parametrize("victim", ["sender", "trigger-engine"])
def test_kill_9_mid_stream_loses_and_duplicates_nothing(crash_stack: TestStack, victim: str) -> None:
    orders = [f"K{victim[0].upper()}{i:05d}" for i in range(ORDERS)]
    posted: list[int] = []
    errors: list[str] = []
    producer = threading.Thread(target=_post_all, args=(crash_stack, orders, posted, errors), daemon=True)
    producer.start()

    # Kill once a good part of the stream is through the victim, while the rest is still coming.
    poll(lambda: len(_confirmed_orders(crash_stack)) >= ORDERS // 4, timeout=60, what="a quarter confirmed")
    crash_stack.stack.kill(victim, signal.SIGKILL)
    assert not crash_stack.stack.procs[victim].alive
    crash_stack.restart(victim)

    producer.join(timeout=120)
    assert not producer.is_alive()
    assert errors == []
    assert sum(posted) == ORDERS

    confirmed = poll(lambda: (c := _confirmed_orders(crash_stack)) and len(c) >= ORDERS and c, timeout=120,
                     what="every order confirmed")
    # Every send-log row settles: nothing left queued or in doubt that could still go out twice.
    def settled() -> bool:
        rows = crash_stack.http.get(crash_stack.url("sender", "/v1/messages"), params={"limit": 1000},
                                    headers=crash_stack.auth).json()["messages"]
        return len(rows) == ORDERS and all(r["state"] == "sent" for r in rows)

    poll(settled, timeout=60, what="the send log to settle")
    confirmed = _confirmed_orders(crash_stack)
    assert set(confirmed) == set(orders), "missing: " + ", ".join(sorted(set(orders) - set(confirmed))[:10])
    twice = {order: n for order, n in confirmed.items() if n > 1}
    assert twice == {}, f"confirmed more than once: {twice}"
