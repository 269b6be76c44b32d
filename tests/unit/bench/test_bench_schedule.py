"""Open-loop slots: the arrival rate holds whatever the batch size."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrm_bench.payments import order_id, order_of_callback, payment, phone
from scrm_bench.schedule import Slot, per_second, scheduled_time, slots, total_events
from scrm_common.contracts.events import parse_event


def test_one_event_per_slot_at_the_arrival_rate() -> None:
    s = slots(300, 60, 1)
    assert len(s) == 18_000
    assert s[0] == Slot(0, 0.0, 0, 1)
    assert s[1].at == pytest.approx(1 / 300)
    assert s[-1].at == pytest.approx(17_999 / 300)


def test_batches_are_stamped_with_their_slot_time() -> None:
    s = slots(300, 60, 10)
    assert len(s) == 1800
    assert [x.at for x in s[:3]] == pytest.approx([0.0, 10 / 300, 20 / 300])
    assert all(x.size == 10 for x in s)
    assert scheduled_time(1000.0, s[3]) == pytest.approx(1000.0 + 0.1)


def test_the_last_slot_takes_the_remainder() -> None:
    s = slots(7, 1, 3)
    assert [(x.first, x.size) for x in s] == [(0, 3), (3, 3), (6, 1)]
    assert s[-1].at == pytest.approx(6 / 7)


@settings(max_examples=50, deadline=None)
@given(rate=st.floats(min_value=1, max_value=1000), duration=st.floats(min_value=0.5, max_value=30),
       batch=st.integers(min_value=1, max_value=100))
def test_slots_cover_every_event_once_at_the_rate(rate: float, duration: float, batch: int) -> None:
    s = slots(rate, duration, batch)
    total = total_events(rate, duration)
    assert sum(x.size for x in s) == total
    assert [x.first for x in s] == list(range(0, total, batch))
    for x in s:
        assert math.isclose(x.at, x.first / rate)
        assert 1 <= x.size <= batch
    assert all(a.at < b.at for a, b in zip(s, s[1:], strict=False))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        slots(0, 10, 1)
    with pytest.raises(ValueError):
        slots(10, 10, 0)


def test_per_second_buckets() -> None:
    assert per_second([100.1, 100.9, 101.5, 103.0, 99.0, 104.2], 100.0, 4) == [2, 1, 0, 1]


def test_bench_payments_are_valid_distinct_and_traceable() -> None:
    events = [payment("ABC123", 1000, i, 1_700_000_000.0 + i) for i in range(300)]
    for event in events:
        parse_event(event)
    assert len({e["data"]["order_id"] for e in events}) == 300
    assert len({e["contact"]["phone"] for e in events}) == 300
    assert phone(0, 5) == "+4915100000005"
    assert order_of_callback(f"demo|order_confirmation|{order_id('ABC123', 7)}", "ABC123") == order_id("ABC123", 7)
    assert order_of_callback("demo|order_confirmation|A000001", "ABC123") is None
    assert order_of_callback(None, "ABC123") is None
