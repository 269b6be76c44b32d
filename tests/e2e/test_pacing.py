"""R-S3 pacing: a marketing burst is spread 3–5 s apart per account; transactional messages are not held back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.events import contact_created, new_order, new_phone, payment
from tests.support.stack import TestStack, poll, start_stack

BURST = 4


@pytest.fixture(scope="module")
def paced_stack(backend, work_dir: Path) -> Iterator[TestStack]:  # type: ignore[no-untyped-def]
    stack = start_stack(work_dir, backend,
                        processes=("ingest", "trigger-engine", "sender", "simulator"))
    yield stack
    stack.close()


def _at(message: dict) -> datetime:  # type: ignore[type-arg]
    return datetime.fromisoformat(message["received_at"].replace("Z", "+00:00"))


def test_marketing_burst_is_spread_while_an_order_confirmation_goes_straight_through(paced_stack: TestStack) -> None:
    phones = [new_phone() for _ in range(BURST)]
    assert paced_stack.post_events({"events": [contact_created(phone=p, name="Kim") for p in phones]}).status_code == 202
    order = new_order()
    assert paced_stack.post_events(payment(order_id=order, phone=new_phone())).status_code == 202

    def arrived() -> list[dict]:  # type: ignore[type-arg]
        return [m for m in paced_stack.sim_messages() if m["template"]]

    messages = poll(lambda: (m := arrived()) and len(m) >= BURST + 1 and m, timeout=60, what="burst and order")
    welcomes = sorted((m for m in messages if m["template"]["name"] == "welcome"), key=_at)
    [confirmation] = [m for m in messages if m["template"]["name"] == "order_confirmation"]
    assert len(welcomes) == BURST

    gaps = [(b - a).total_seconds() for a, b in zip(map(_at, welcomes), map(_at, welcomes[1:]), strict=False)]
    # R-S3: 3–5 s between marketing messages of one account (a little slack for the 50 ms dispatch poll)
    assert all(2.95 <= gap <= 5.6 for gap in gaps), gaps
    # the confirmation did not queue behind the paced welcomes
    assert _at(confirmation) < _at(welcomes[1]), (confirmation["received_at"], [w["received_at"] for w in welcomes])
