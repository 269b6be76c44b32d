"""R-S7: what a provider error means for the message, the contact and the account (CLOUD-API.md §4.3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrm_common.backoff import Backoff
from sender.domain.outcomes import (
    LATE_RETRY_DELAY,
    MEANINGS,
    ForContact,
    ForMessage,
    RetryPolicy,
    after_error,
    meaning,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RETRY, RECIPIENT, LATE, HOLD, FAIL = (ForMessage.RETRY, ForMessage.RETRY_RECIPIENT, ForMessage.RETRY_AFTER_24H,
                                      ForMessage.HOLD, ForMessage.FAIL)
NONE, INVALID, OPT_OUT = ForContact.NOTHING, ForContact.INVALID_NUMBER, ForContact.MARKETING_OPT_OUT

# code, for the message, for the contact, holds the account
TABLE = [
    (0, HOLD, NONE, True), (190, HOLD, NONE, True), (3, HOLD, NONE, True), (10, HOLD, NONE, True),
    (200, HOLD, NONE, True), (299, HOLD, NONE, True), (131005, HOLD, NONE, True), (33, HOLD, NONE, True),
    (368, HOLD, NONE, True), (131031, HOLD, NONE, True), (131042, HOLD, NONE, True), (131045, HOLD, NONE, True),
    (131048, HOLD, NONE, True), (131064, HOLD, NONE, True), (131057, HOLD, NONE, True),
    (1, RETRY, NONE, False), (2, RETRY, NONE, False), (4, RETRY, NONE, False), (80007, RETRY, NONE, False),
    (130429, RETRY, NONE, False), (131000, RETRY, NONE, False), (131016, RETRY, NONE, False),
    (133004, RETRY, NONE, False), (131056, RECIPIENT, NONE, False),
    (131026, LATE, INVALID, False), (131049, LATE, NONE, False),
    (131050, FAIL, OPT_OUT, False), (131047, FAIL, NONE, False), (131030, FAIL, NONE, False),
    (131021, FAIL, NONE, False), (131009, FAIL, NONE, False), (131008, FAIL, NONE, False), (100, FAIL, NONE, False),
    (130472, FAIL, NONE, False), (130497, FAIL, NONE, False), (131063, FAIL, NONE, False),
    (132000, FAIL, NONE, False), (132001, FAIL, NONE, False), (132005, FAIL, NONE, False),
    (132012, FAIL, NONE, False), (132015, FAIL, NONE, False), (132016, FAIL, NONE, False),
    (132018, FAIL, NONE, False),
]


@pytest.mark.parametrize(("code", "for_message", "for_contact", "holds_account"), TABLE)
def test_each_code_means_what_meta_says(code: int, for_message: ForMessage, for_contact: ForContact,
                                        holds_account: bool) -> None:
    found = meaning(code)
    assert (found.message, found.contact, found.account_hold is not None) == (for_message, for_contact,
                                                                              holds_account)
    assert found.summary


def test_every_table_row_has_a_test_row() -> None:
    assert set(MEANINGS) - {row[0] for row in TABLE} <= {80004, 133016, 131037, 131051, 131052, 131053, 131062,
                                                          130403, 135000, 132007, 132068, 132069}


@pytest.mark.parametrize(("code", "http_status", "asynchronous", "for_message"), [
    (None, None, False, RETRY),  # no answer at all: the request may be tried again soon
    (None, None, True, LATE),  # a `failed` status without an error: R-S7's one 24 h retry
    (999_999, 400, False, LATE),  # unknown code: R-S7's default
    (999_999, 502, False, RETRY),  # unknown code from a failing server
    (999_999, None, True, LATE),
])
def test_codes_outside_the_table(code: int | None, http_status: int | None, asynchronous: bool,
                                 for_message: ForMessage) -> None:
    assert meaning(code, http_status=http_status, asynchronous=asynchronous).message is for_message


def _after(code: int | None, *, attempts: int = 1, late_retry_attempt: int | None = None,
           late_retry_code: int | None = None, jitter: float = 0.5):
    return after_error(meaning(code), detail="details", attempts=attempts, late_retry_attempt=late_retry_attempt,
                       late_retry_code=late_retry_code, now=NOW, policy=RetryPolicy(max_attempts=8), jitter=jitter)


@pytest.mark.parametrize("code", [131026, 131049, 999_999])
def test_a_first_failure_is_retried_once_not_before_24_hours(code: int) -> None:
    first = _after(code, attempts=1)
    assert (first.action, first.late_retry, first.mark_invalid) == ("retry", True, False)
    assert first.at is not None and first.at - NOW >= timedelta(hours=24)
    assert "retrying once at" in first.reason


@pytest.mark.parametrize(("code", "marks"), [(131026, True), (131049, False), (999_999, False)])
def test_after_the_24_hour_retry_failed_too_the_message_fails(code: int, marks: bool) -> None:
    second = _after(code, attempts=2, late_retry_attempt=1, late_retry_code=code)
    assert (second.action, second.late_retry, second.mark_invalid) == ("fail", False, marks)
    assert "24 h retry" in second.reason


@pytest.mark.parametrize("first", [131049, 131000, None, 999_999])
def test_one_131026_on_a_24_hour_retry_taken_for_another_reason_marks_nothing(first: int | None) -> None:
    """131026 includes temporary causes: a number is marked only when the retried 131026 failed again."""
    second = _after(131026, attempts=2, late_retry_attempt=1, late_retry_code=first)
    assert (second.action, second.late_retry, second.mark_invalid) == ("fail", False, False)
    assert "24 h retry" in second.reason


@pytest.mark.parametrize("code", [131000, 130429, 131016, 2, None])
def test_a_retryable_error_backs_off_then_takes_the_24_hour_retry_then_fails(code: int | None) -> None:
    soon = _after(code, attempts=3)
    assert soon.action == "retry" and not soon.late_retry
    assert soon.at is not None and soon.at - NOW < timedelta(minutes=2)
    exhausted = _after(code, attempts=8)
    assert (exhausted.action, exhausted.late_retry) == ("retry", True)
    assert exhausted.at == NOW + LATE_RETRY_DELAY
    assert "gave up after 8 attempts" in exhausted.reason
    # after the 24 h retry, backoff starts again for its round …
    again = _after(code, attempts=9, late_retry_attempt=8)
    assert again.action == "retry" and not again.late_retry
    # … and when that round is exhausted too, the message fails; a retryable error never marks a number
    final = _after(code, attempts=16, late_retry_attempt=8)
    assert (final.action, final.mark_invalid) == ("fail", False)


def test_131050_is_never_retried_and_is_the_contacts_opt_out() -> None:
    decision = _after(131050)
    assert (decision.action, decision.opt_out, decision.mark_invalid) == ("fail", True, False)


@pytest.mark.parametrize("code", [131030, 131047, 132001, 132015, 100])
def test_request_errors_fail_at_once_and_mark_nothing(code: int) -> None:
    decision = _after(code)
    assert (decision.action, decision.mark_invalid, decision.opt_out, decision.at) == ("fail", False, False, None)


@pytest.mark.parametrize(("code", "hold"), [
    (190, timedelta(minutes=10)), (0, timedelta(minutes=10)), (131048, timedelta(hours=6)),
    (368, timedelta(days=1)), (131031, timedelta(days=1)), (131042, timedelta(hours=1)),
    (131045, timedelta(hours=1)), (131057, timedelta(minutes=1)),
])
def test_account_level_codes_hold_the_account_and_keep_the_message(code: int, hold: timedelta) -> None:
    decision = _after(code, attempts=8)  # even the last attempt: a hold uses no attempt
    assert decision.action == "hold"
    assert decision.at == decision.hold_account_until == NOW + hold
    assert decision.reason.startswith(f"account held until {(NOW + hold).isoformat(timespec='seconds')}")
    assert f"({code})" in decision.reason


def test_the_reason_names_the_code_its_meaning_and_metas_details() -> None:
    decision = after_error(meaning(131049), detail="In order to maintain a healthy ecosystem engagement …",
                           attempts=1, late_retry_attempt=None, late_retry_code=None, now=NOW, policy=RetryPolicy(),
                           jitter=0.0)
    assert "(131049)" in decision.reason and "healthy ecosystem" in decision.reason


def test_retry_delay_grows_exponentially_and_stops_at_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=6)
    delays = [(policy.next_attempt_at(RETRY, n, NOW, jitter=1.0) - NOW).total_seconds()  # type: ignore[operator]
              for n in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.next_attempt_at(RETRY, 6, NOW, jitter=1.0) is None
    assert policy.next_attempt_at(RECIPIENT, 7, NOW, jitter=1.0) is None


def test_retry_delay_is_capped_by_the_backoff_maximum() -> None:
    policy = RetryPolicy(max_attempts=100, backoff=Backoff(base_seconds=0.5, max_seconds=60.0))
    assert policy.next_attempt_at(RETRY, 30, NOW, jitter=1.0) == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(("attempts", "seconds"), [(0, 1), (1, 1), (2, 4), (3, 16), (4, 64)])
def test_pair_limit_waits_four_to_the_x_seconds(attempts: int, seconds: int) -> None:
    assert RetryPolicy().next_attempt_at(RECIPIENT, attempts, NOW, jitter=0.3) == NOW + timedelta(seconds=seconds)


@given(st.integers(1, 7), st.floats(0, 1))
def test_retry_delay_lies_between_half_and_full_ceiling(attempts: int, jitter: float) -> None:
    ceiling = min(60.0, 0.5 * 2 ** (attempts - 1))
    at = RetryPolicy().next_attempt_at(RETRY, attempts, NOW, jitter)
    assert at is not None
    assert ceiling / 2 - 1e-6 <= (at - NOW).total_seconds() <= ceiling + 1e-6
