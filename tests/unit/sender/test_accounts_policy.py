"""An account's pacing policy against the Cloud API's limits (R-S3, CLOUD-API §6): each rule names its field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sender.domain.accounts import AccountPolicy, Fault, policy_faults

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DEFAULT = AccountPolicy()


def faults(policy: AccountPolicy, *, registered_at: datetime = NOW, given: tuple[str, ...] = ()) -> dict[str, str]:
    return {f.field: f.reason for f in policy_faults(policy, registered_at=registered_at, now=NOW, given=given)}


def test_the_r_s3_defaults_and_the_cloud_api_extremes_pass() -> None:
    assert DEFAULT == AccountPolicy(80, 3.0, 5.0, 200, 50, 3)
    assert faults(DEFAULT) == {}
    fastest = AccountPolicy(throughput_per_second=1000, marketing_min_interval_s=0.001,
                            marketing_max_interval_s=0.001, marketing_per_hour=3_600_000, new_account_per_day=250,
                            new_account_days=0)
    assert faults(fastest) == {}
    assert faults(DEFAULT, registered_at=NOW - timedelta(days=400)) == {}


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"throughput_per_second": 20}, "throughput_per_second", "80 or 1000"),
    ({"throughput_per_second": 81}, "throughput_per_second", "80 or 1000"),
    ({"marketing_min_interval_s": 0.0}, "marketing_min_interval_s", "more than 0"),
    ({"marketing_min_interval_s": -1.0}, "marketing_min_interval_s", "more than 0"),
    ({"marketing_min_interval_s": float("nan")}, "marketing_min_interval_s", "more than 0"),
    ({"marketing_min_interval_s": 0.01, "marketing_max_interval_s": 0.02}, "marketing_min_interval_s",
     "faster than the account's throughput of 80"),
    ({"marketing_max_interval_s": 2.0}, "marketing_max_interval_s", "interval range is empty"),
    ({"marketing_max_interval_s": float("inf")}, "marketing_max_interval_s", "at most 86400"),
    ({"marketing_per_hour": -1}, "marketing_per_hour", "0 or more"),
    ({"marketing_per_hour": 80 * 3600 + 1}, "marketing_per_hour", "more than the account's throughput"),
    ({"new_account_per_day": 251}, "new_account_per_day", "1 to 250"),
    ({"new_account_per_day": 0}, "new_account_per_day", "1 to 250"),
    ({"new_account_days": -1}, "new_account_days", "0 to 365"),
    ({"new_account_days": 366}, "new_account_days", "0 to 365"),
])
def test_each_rule_names_its_field(change: dict[str, float], field: str, words: str) -> None:
    found = faults(replace(DEFAULT, **change))  # type: ignore[arg-type]
    assert list(found) == [field]
    assert words in found[field]


def test_a_registration_in_the_future_is_refused() -> None:
    assert list(faults(DEFAULT, registered_at=NOW + timedelta(seconds=1))) == ["registered_at"]


def test_every_field_at_fault_is_named_once_in_field_order() -> None:
    bad = AccountPolicy(throughput_per_second=5, marketing_min_interval_s=-1, marketing_max_interval_s=-1,
                        marketing_per_hour=-1, new_account_per_day=0, new_account_days=-1)
    found = policy_faults(bad, registered_at=NOW + timedelta(days=1), now=NOW)
    assert [f.field for f in found] == ["throughput_per_second", "marketing_min_interval_s",
                                        "marketing_max_interval_s", "marketing_per_hour", "new_account_per_day",
                                        "new_account_days", "registered_at"]
    assert all(isinstance(f, Fault) and f.reason for f in found)


@pytest.mark.parametrize(("given", "blamed"), [
    ((), "marketing_min_interval_s"),
    (("throughput_per_second",), "throughput_per_second"),  # a PATCH lowering the tier names the tier
    (("marketing_min_interval_s",), "marketing_min_interval_s"),
    (("throughput_per_second", "marketing_min_interval_s"), "marketing_min_interval_s"),
])
def test_a_rule_between_two_fields_names_the_one_the_request_set(given: tuple[str, ...], blamed: str) -> None:
    policy = AccountPolicy(throughput_per_second=80, marketing_min_interval_s=0.005, marketing_max_interval_s=1)
    assert list(faults(policy, given=given)) == [blamed]


def test_per_hour_is_bounded_by_the_tier() -> None:
    assert faults(replace(DEFAULT, throughput_per_second=1000, marketing_per_hour=1000 * 3600)) == {}
    assert list(faults(replace(DEFAULT, marketing_per_hour=1000 * 3600))) == ["marketing_per_hour"]
    assert list(faults(replace(DEFAULT, marketing_per_hour=1000 * 3600),
                       given=("throughput_per_second",))) == ["throughput_per_second"]
