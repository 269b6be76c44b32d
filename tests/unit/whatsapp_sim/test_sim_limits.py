"""Throughput and pair limits as token buckets, and the 24-hour service window, on a fake clock."""

from __future__ import annotations

import random

import pytest

from whatsapp_sim.domain.limits import PairLimiter, ThroughputLimiter, TokenBuckets
from whatsapp_sim.domain.outcomes import OutcomeOdds, failure_plan, plan_outcome, pricing_for
from whatsapp_sim.domain.window import ServiceWindows


class FakeClock:
    def __init__(self, at: float = 1_000.0) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds


def test_token_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=2.0, capacity=4, now=clock)
    assert [buckets.try_take("k") for _ in range(5)] == [True] * 4 + [False]
    clock.advance(0.49)
    assert not buckets.try_take("k")
    clock.advance(0.01)
    assert buckets.try_take("k") and not buckets.try_take("k")
    clock.advance(100)
    assert buckets.available("k") == 4  # never above capacity
    assert buckets.try_take("other")  # keys are independent


def test_full_buckets_are_pruned() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1.0, capacity=2, now=clock, prune_every=1_000_000)
    for key in range(100):
        buckets.try_take(key)
    assert len(buckets) == 100
    clock.advance(1.0)
    buckets.prune()
    assert len(buckets) == 0


def test_throughput_limit_is_per_number_and_returns_130429() -> None:
    clock = FakeClock()
    limiter = ThroughputLimiter(mps=80, now=clock)
    results = [limiter.check("A") for _ in range(81)]
    assert all(r is None for r in results[:80])
    error = results[80]
    assert error is not None and (error.code, error.http_status) == (130429, 400)
    assert limiter.check("B") is None
    clock.advance(1 / 80)
    assert limiter.check("A") is None
    assert limiter.check("A") is not None


def test_pair_limit_bursts_45_then_one_per_6_seconds() -> None:
    clock = FakeClock()
    limiter = PairLimiter(interval_s=6.0, burst=45, now=clock)
    assert all(limiter.check("A", "491") is None for _ in range(45))
    error = limiter.check("A", "491")
    assert error is not None and (error.code, error.http_status) == (131056, 400)
    assert limiter.check("A", "492") is None  # other recipients are unaffected
    assert limiter.check("B", "491") is None  # and other numbers
    clock.advance(5.9)
    assert limiter.check("A", "491") is not None
    clock.advance(0.1)
    assert limiter.check("A", "491") is None
    assert limiter.check("A", "491") is not None


def test_pair_limit_burst_of_20_needs_two_minutes_to_recover() -> None:
    clock = FakeClock()
    limiter = PairLimiter(interval_s=6.0, burst=20, now=clock)
    assert all(limiter.check("A", "1") is None for _ in range(20))
    clock.advance(119)
    assert sum(limiter.check("A", "1") is None for _ in range(20)) == 19


def test_service_window_opens_on_inbound_and_closes_after_24h() -> None:
    clock = FakeClock()
    windows = ServiceWindows(clock)
    assert not windows.is_open("A", "491")
    error = windows.check("A", "491")
    assert error is not None and error.code == 131047
    closes = windows.touch("A", "491")
    assert closes == clock.at + 86_400
    assert windows.is_open("A", "491") and not windows.is_open("B", "491") and not windows.is_open("A", "492")
    clock.advance(86_399)
    assert windows.check("A", "491") is None
    windows.touch("A", "491")  # every inbound message refreshes it
    clock.advance(86_399)
    assert windows.is_open("A", "491")
    clock.advance(1)
    assert not windows.is_open("A", "491")
    windows.prune()
    assert len(windows) == 0


@pytest.mark.parametrize("seed", range(20))
def test_outcome_plans_are_ordered_and_well_formed(seed: int) -> None:
    plan = plan_outcome(random.Random(seed), OutcomeOdds(delivered=0.8, read=0.5, fail=0.2, reply=0.3), (50, 300))
    names = [s.status for s in plan.statuses]
    times = [s.after_s for s in plan.statuses]
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(0.05 <= gap <= 0.3 for gap in gaps)
    assert names in (["failed"], ["sent"], ["sent", "delivered"], ["sent", "delivered", "read"])
    if names == ["failed"]:
        assert plan.statuses[0].error_code == 131026  # 131049 is for marketing only
    if plan.reply_after_s is not None:
        assert names[-1] == "read" and plan.reply_after_s > times[-1]


def test_outcome_probabilities_are_honoured() -> None:
    rng = random.Random(7)
    plans = [plan_outcome(rng, OutcomeOdds(delivered=0.9, read=0.5, fail=0.1, reply=0.0), (1, 2), marketing=True)
             for _ in range(4000)]
    failed = [p for p in plans if p.statuses[0].status == "failed"]
    delivered = [p for p in plans if any(s.status == "delivered" for s in p.statuses)]
    assert 0.08 < len(failed) / 4000 < 0.12
    assert {p.statuses[0].error_code for p in failed} == {131026, 131049}
    assert 0.78 < len(delivered) / 4000 < 0.84
    assert all(p.reply_after_s is None for p in plans)
    assert failure_plan(rng, 131047, (1, 2)).statuses[0].error_code == 131047


def test_pricing() -> None:
    assert pricing_for("marketing", window_open=True)["type"] == "regular"
    assert pricing_for("utility", window_open=True) == {
        "billable": False, "pricing_model": "PMP", "type": "free_customer_service", "category": "utility"}
    assert pricing_for("utility", window_open=False)["billable"] is True
    assert pricing_for(None, window_open=True)["category"] == "service"
