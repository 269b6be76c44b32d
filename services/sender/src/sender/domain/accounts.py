"""An account's pacing policy against the Cloud API's own limits (R-S3 "each account's policy is
configurable up to the Cloud API's own limits", CLOUD-API.md §6).

| field                      | allowed                                   | why                                         |
|----------------------------|-------------------------------------------|---------------------------------------------|
| throughput_per_second      | 80 or 1000                                | §6.2: the two Cloud API tiers of a number   |
| marketing_min_interval_s   | ≥ 1/throughput, ≤ 1 day                   | no faster than the number's throughput      |
| marketing_max_interval_s   | ≥ marketing_min_interval_s, ≤ 1 day       | an interval range                           |
| marketing_per_hour         | 0 … throughput × 3600                     | §6.2: no more than the number can send      |
| new_account_per_day        | 1 … 250                                   | §6.4: a new portfolio reaches 250 users/24h |
| new_account_days           | 0 … 365 (0: no new-account protection)    |                                             |
| registered_at              | not in the future                         | protection counts from it                   |
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

THROUGHPUT_TIERS = (80, 1000)  # CLOUD-API §6.2: messages per second of a number, default and upgraded
MAX_INTERVAL_S = 86_400.0
MESSAGING_LIMIT_NEW = 250  # CLOUD-API §6.4: the lowest messaging limit, unique users per rolling 24 h
MAX_NEW_ACCOUNT_DAYS = 365

# R-S3 defaults for a risk-averse account.
DEFAULT_THROUGHPUT = 80
DEFAULT_MIN_INTERVAL_S = 3.0
DEFAULT_MAX_INTERVAL_S = 5.0
DEFAULT_PER_HOUR = 200
DEFAULT_NEW_PER_DAY = 50
DEFAULT_NEW_DAYS = 3


@dataclass(frozen=True, slots=True)
class AccountPolicy:
    """What an account's owner sets: throughput tier (messages/s), marketing interval range (seconds),
    marketing messages per hour, and the new-account limit (per day, for so many days after
    `registered_at`)."""

    throughput_per_second: int = DEFAULT_THROUGHPUT
    marketing_min_interval_s: float = DEFAULT_MIN_INTERVAL_S
    marketing_max_interval_s: float = DEFAULT_MAX_INTERVAL_S
    marketing_per_hour: int = DEFAULT_PER_HOUR
    new_account_per_day: int = DEFAULT_NEW_PER_DAY
    new_account_days: int = DEFAULT_NEW_DAYS


@dataclass(frozen=True, slots=True)
class Fault:
    """A field at fault (its name as the request spells it) and why."""

    field: str
    reason: str


def _blame(field: str, other: str, given: Collection[str]) -> str:
    """Which of two fields a rule between them names: `field`, unless only `other` was given now."""
    return other if other in given and field not in given else field


def policy_faults(policy: AccountPolicy, *, registered_at: datetime, now: datetime,
                  given: Collection[str] = ()) -> list[Fault]:
    """Every rule of the table above `policy` and `registered_at` break, at most one per field, in field
    order; [] when it may be stored.

    `given` are the fields the request set (a PATCH merges them into the stored policy): a rule between
    two fields names the one given, so a throughput lowered under the stored interval names
    `throughput_per_second`.
    """
    faults: dict[str, str] = {}

    def fault(field: str, reason: str) -> None:
        faults.setdefault(field, reason)

    tps = policy.throughput_per_second
    if tps not in THROUGHPUT_TIERS:
        fault("throughput_per_second", f"must be {' or '.join(map(str, THROUGHPUT_TIERS))} (the Cloud API's "
                                       "throughput tiers, messages per second)")
    rate = tps if tps in THROUGHPUT_TIERS else max(THROUGHPUT_TIERS)
    low, high = policy.marketing_min_interval_s, policy.marketing_max_interval_s
    if not 0 < low <= MAX_INTERVAL_S:
        fault("marketing_min_interval_s", f"must be more than 0 and at most {MAX_INTERVAL_S:g} seconds")
    elif low < 1 / rate:
        fault(_blame("marketing_min_interval_s", "throughput_per_second", given),
              f"{low:g} s between messages is faster than the account's throughput of {rate} messages/s "
              f"(at least {1 / rate:g} s)")
    if not 0 < high <= MAX_INTERVAL_S:
        fault("marketing_max_interval_s", f"must be more than 0 and at most {MAX_INTERVAL_S:g} seconds")
    elif high < low:
        fault(_blame("marketing_max_interval_s", "marketing_min_interval_s", given),
              f"the interval range is empty: marketing_max_interval_s {high:g} < marketing_min_interval_s {low:g}")
    per_hour_max = rate * 3600
    if policy.marketing_per_hour < 0:
        fault("marketing_per_hour", "must be 0 or more")
    elif policy.marketing_per_hour > per_hour_max:
        fault(_blame("marketing_per_hour", "throughput_per_second", given),
              f"{policy.marketing_per_hour} per hour is more than the account's throughput of {rate} messages/s "
              f"allows ({per_hour_max})")
    if not 1 <= policy.new_account_per_day <= MESSAGING_LIMIT_NEW:
        fault("new_account_per_day", f"must be 1 to {MESSAGING_LIMIT_NEW} (a new number's messaging limit is "
                                     f"{MESSAGING_LIMIT_NEW} users per 24 h)")
    if not 0 <= policy.new_account_days <= MAX_NEW_ACCOUNT_DAYS:
        fault("new_account_days", f"must be 0 to {MAX_NEW_ACCOUNT_DAYS} (0: no new-account limit)")
    if registered_at > now:
        fault("registered_at", "is in the future")
    order = ("throughput_per_second", "marketing_min_interval_s", "marketing_max_interval_s", "marketing_per_hour",
             "new_account_per_day", "new_account_days", "registered_at")
    return [Fault(f, faults[f]) for f in order if f in faults]
