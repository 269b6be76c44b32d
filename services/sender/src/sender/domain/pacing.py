"""R-S3 per-account pacing: marketing spread out, transactional only bounded by throughput."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class PacingPolicy:
    """An account's limits; defaults are the risk-averse ones of R-S3 and CLOUD-API §6.2."""

    marketing_min_interval: timedelta = timedelta(seconds=3)  # R-S3: 3–5 s between messages
    marketing_max_interval: timedelta = timedelta(seconds=5)
    marketing_per_hour: int = 200  # R-S3: at most 200 per hour
    new_account_per_day: int = 50  # R-S3: new accounts under 50 per day …
    new_account_days: int = 3  # … for their first 3 days
    throughput_per_second: float = 80.0  # Cloud API default per number


@dataclass(frozen=True, slots=True)
class PacingState:
    """What pacing remembers between claims."""

    next_marketing_at: datetime | None
    utility_tokens: float
    tokens_at: datetime | None


@dataclass(frozen=True, slots=True)
class Allowance:
    """How many messages of each class may be handed to the provider now."""

    utility: int
    marketing: int


def allowance(
    policy: PacingPolicy, state: PacingState, now: datetime, *, registered_at: datetime,
    marketing_last_hour: int, marketing_last_day: int,
) -> Allowance:
    """What may go out now for this account; "new account" protection (R-S3) counts from when its
    number was registered (`registered_at`), never from when the row was written."""
    tokens = _refilled(policy, state, now)
    marketing = 0
    if state.next_marketing_at is None or now >= state.next_marketing_at:
        marketing = 1
    if marketing_last_hour >= policy.marketing_per_hour:
        marketing = 0
    is_new = now - registered_at < timedelta(days=policy.new_account_days)
    if is_new and marketing_last_day >= policy.new_account_per_day - 1:
        marketing = 0  # "under 50 per day": at most 49
    # Marketing shares the number's throughput with transactional traffic.
    utility = int(math.floor(tokens))
    marketing = min(marketing, max(0, utility))
    return Allowance(utility=max(0, utility - marketing), marketing=marketing)


def after_claim(
    policy: PacingPolicy, state: PacingState, now: datetime, *, utility: int, marketing: int, jitter: float
) -> PacingState:
    """The state once `utility` + `marketing` messages were handed out; `jitter` in [0, 1] picks the interval."""
    tokens = _refilled(policy, state, now) - utility - marketing
    next_marketing_at = state.next_marketing_at
    if marketing:
        span = policy.marketing_max_interval - policy.marketing_min_interval
        next_marketing_at = now + policy.marketing_min_interval + span * min(1.0, max(0.0, jitter))
    return replace(state, utility_tokens=max(0.0, tokens), tokens_at=now, next_marketing_at=next_marketing_at)


def _refilled(policy: PacingPolicy, state: PacingState, now: datetime) -> float:
    burst = max(1.0, policy.throughput_per_second)
    if state.tokens_at is None:
        return burst
    elapsed = max(0.0, (now - state.tokens_at).total_seconds())
    return min(burst, state.utility_tokens + elapsed * policy.throughput_per_second)
