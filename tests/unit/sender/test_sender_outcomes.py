"""R-S7: what follows a provider error, by code (CLOUD-API.md §4.3), and when to retry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrm_common.backoff import Backoff
from sender.domain.outcomes import Next, RetryPolicy, classify

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("code", "next_"), [
    (None, Next.RETRY),
    (130429, Next.RETRY),  # throughput limit
    (131056, Next.RETRY_RECIPIENT),  # pair rate limit
    (131026, Next.INVALID_NUMBER),  # undeliverable
    (131009, Next.INVALID_NUMBER),  # bad `to`
    (131030, Next.INVALID_NUMBER),
    (131021, Next.INVALID_NUMBER),
    (132001, Next.FAILED),  # template missing / not approved
    (132000, Next.FAILED),  # parameter count mismatch
    (131047, Next.FAILED),  # re-engagement window
    (131050, Next.FAILED),  # user stopped marketing
    (131048, Next.FAILED),  # spam rate limit: no short retry
    (132015, Next.FAILED),  # template paused
    (100, Next.FAILED),
    (0, Next.FAILED),
    (190, Next.FAILED),
    (368, Next.FAILED),
    (1, Next.RETRY), (2, Next.RETRY), (4, Next.RETRY), (80007, Next.RETRY),
    (131000, Next.RETRY), (131016, Next.RETRY), (131057, Next.RETRY), (133004, Next.RETRY),
])
def test_classify_follows_the_cloud_api_code_table(code, next_):
    assert classify(code) is next_


def test_retry_delay_grows_exponentially_and_stops_at_max_attempts():
    policy = RetryPolicy(max_attempts=6)
    delays = [(policy.next_attempt_at(Next.RETRY, n, NOW, jitter=1.0) - NOW).total_seconds() for n in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.next_attempt_at(Next.RETRY, 6, NOW, jitter=1.0) is None
    assert policy.next_attempt_at(Next.RETRY_RECIPIENT, 7, NOW, jitter=1.0) is None


def test_retry_delay_is_capped_by_the_backoff_maximum():
    policy = RetryPolicy(max_attempts=100, backoff=Backoff(base_seconds=0.5, max_seconds=60.0))
    at = policy.next_attempt_at(Next.RETRY, 30, NOW, jitter=1.0)
    assert at == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 1), (1, 1), (2, 4), (3, 16), (4, 64)])
def test_pair_limit_waits_four_to_the_x_seconds(attempts, seconds):
    assert RetryPolicy().next_attempt_at(Next.RETRY_RECIPIENT, attempts, NOW, jitter=0.3) == NOW + timedelta(
        seconds=seconds)


@given(st.integers(1, 7), st.floats(0, 1))
def test_retry_delay_lies_between_half_and_full_ceiling(attempts, jitter):
    policy = RetryPolicy()
    ceiling = min(60.0, 0.5 * 2 ** (attempts - 1))
    delay = (policy.next_attempt_at(Next.RETRY, attempts, NOW, jitter) - NOW).total_seconds()
    assert ceiling / 2 - 1e-6 <= delay <= ceiling + 1e-6
