"""R-S3 pacing on a fake time line: marketing 3–5 s apart, ≤ 200 an hour, new accounts < 50 a day."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sender.domain.pacing import PacingPolicy, PacingState, after_claim, allowance

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=50)
OLD_ACCOUNT = T0 - timedelta(days=365)
FRESH = PacingState(next_marketing_at=None, utility_tokens=0.0, tokens_at=None)


@dataclass
class Account:
    """A sender loop for one account on a fake clock, claiming whatever pacing allows."""

    policy: PacingPolicy = field(default_factory=PacingPolicy)
    created_at: datetime = OLD_ACCOUNT
    seed: int = 7
    state: PacingState = FRESH
    marketing_at: list[datetime] = field(default_factory=list)
    utility_at: list[tuple[datetime, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._hour: deque[datetime] = deque()
        self._day: deque[datetime] = deque()

    def tick(self, now: datetime, *, marketing_backlog: bool = True, utility_backlog: int = 0) -> None:
        for window, span in ((self._hour, timedelta(hours=1)), (self._day, timedelta(days=1))):
            while window and now - window[0] >= span:
                window.popleft()
        granted = allowance(self.policy, self.state, now, registered_at=self.created_at,
                            marketing_last_hour=len(self._hour), marketing_last_day=len(self._day))
        marketing = granted.marketing if marketing_backlog else 0
        utility = min(granted.utility, utility_backlog)
        if marketing or utility:
            self.state = after_claim(self.policy, self.state, now, utility=utility, marketing=marketing,
                                     jitter=self.rng.random())
        if marketing:
            self.marketing_at.append(now)
            self._hour.append(now)
            self._day.append(now)
        if utility:
            self.utility_at.append((now, utility))

    def run(self, start: datetime, duration: timedelta, **backlog: object) -> datetime:
        now = start
        while now < start + duration:
            self.tick(now, **backlog)  # type: ignore[arg-type]
            now += STEP
        return now


def gaps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]


def test_marketing_backlog_goes_out_three_to_five_seconds_apart():
    account = Account()
    account.run(T0, timedelta(minutes=10))
    assert len(account.marketing_at) > 100
    assert all(3.0 <= g <= 5.0 + STEP.total_seconds() for g in gaps(account.marketing_at))
    assert min(gaps(account.marketing_at)) < 3.5 and max(gaps(account.marketing_at)) > 4.5  # jitter spreads them
    per_minute = [sum(1 for t in account.marketing_at if T0 + timedelta(minutes=m) <= t < T0 + timedelta(minutes=m + 1))
                  for m in range(10)]
    assert all(12 <= n <= 20 for n in per_minute), per_minute


def test_marketing_stays_at_or_under_two_hundred_in_any_hour():
    account = Account()
    account.run(T0, timedelta(hours=2, minutes=5))
    times = account.marketing_at
    assert len(times) >= 400
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:i + 260] if t - start < timedelta(hours=1))
        assert in_window <= 200
    first_hour = [t for t in times if t < T0 + timedelta(hours=1)]
    assert len(first_hour) == 200


def test_new_account_sends_at_most_49_marketing_messages_a_day():
    account = Account(created_at=T0 - timedelta(days=1))
    end = account.run(T0, timedelta(minutes=30))
    assert len(account.marketing_at) == 49
    # a day after the first send the rolling day has room again
    account.run(T0 + timedelta(days=1), timedelta(seconds=10))
    assert len(account.marketing_at) > 49
    assert end < T0 + timedelta(days=1)


def test_account_older_than_three_days_is_not_held_to_the_new_account_limit():
    account = Account(created_at=T0 - timedelta(days=3))
    account.run(T0, timedelta(minutes=30))
    assert len(account.marketing_at) > 49


def test_utility_is_granted_up_to_throughput_and_never_waits_for_the_marketing_interval():
    account = Account()
    account.run(T0, timedelta(seconds=10), utility_backlog=10_000)
    per_tick = dict(account.utility_at)
    # every tick hands out utility, including the ticks right after a marketing message
    assert len(per_tick) == 200
    for sent in account.marketing_at:
        assert per_tick.get(sent + STEP, 0) > 0
    total = sum(n for _, n in account.utility_at) + len(account.marketing_at)
    rate = PacingPolicy().throughput_per_second
    assert rate * 10 - 5 <= total <= rate + rate * 10  # burst + rate · elapsed


def test_utility_alone_is_bounded_by_throughput_per_second():
    account = Account()
    account.run(T0, timedelta(seconds=5), marketing_backlog=False, utility_backlog=10_000)
    total = sum(n for _, n in account.utility_at)
    assert 80 * 5 <= total <= 80 + 80 * 5
    assert account.marketing_at == []


def test_fresh_account_grants_a_full_burst_sharing_it_with_marketing():
    granted = allowance(PacingPolicy(), FRESH, T0, registered_at=OLD_ACCOUNT, marketing_last_hour=0,
                        marketing_last_day=0)
    assert (granted.utility, granted.marketing) == (79, 1)


def test_marketing_waits_when_the_throughput_is_used_up():
    drained = PacingState(next_marketing_at=None, utility_tokens=0.0, tokens_at=T0)
    granted = allowance(PacingPolicy(), drained, T0, registered_at=OLD_ACCOUNT, marketing_last_hour=0,
                        marketing_last_day=0)
    assert (granted.utility, granted.marketing) == (0, 0)


@settings(max_examples=200, deadline=None)
@given(jitters=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=40),
       steps_ms=st.lists(st.integers(1, 7000), min_size=1, max_size=40))
def test_marketing_hand_outs_are_never_closer_than_the_minimum_interval(jitters, steps_ms):
    policy = PacingPolicy()
    state, now, sent = FRESH, T0, []
    for i in range(200):
        granted = allowance(policy, state, now, registered_at=OLD_ACCOUNT, marketing_last_hour=0,
                            marketing_last_day=0)
        if granted.marketing:
            sent.append(now)
            state = after_claim(policy, state, now, utility=0, marketing=1, jitter=jitters[len(sent) % len(jitters)])
            assert policy.marketing_min_interval <= state.next_marketing_at - now <= policy.marketing_max_interval
        now += timedelta(milliseconds=steps_ms[i % len(steps_ms)])
    assert all(g >= policy.marketing_min_interval.total_seconds() for g in gaps(sent))
