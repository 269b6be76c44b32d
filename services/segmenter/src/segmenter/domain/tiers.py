"""Activity (R-G1) and value (R-G5) tiers and tags (R-G7, R-G8, R-G9), computed against `now`.

Value tiers compare spend in the tenant's base currency (`CurrencySettings`): each currency's spend is
converted with the tenant's FX rate; spend in a currency without a rate is kept apart and does not
count towards the tier (it is shown on the contact as unconverted).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from segmenter.domain.currency import CurrencySettings, Spend, convert
from segmenter.domain.features import ContactFeatures
from segmenter.domain.policy import SegmentPolicy

Tag = str

# The first instant past an inclusive window's end (PostgreSQL keeps microseconds).
_TICK = timedelta(microseconds=1)


class ActivityTier(StrEnum):
    """R-G1: how recently the contact replied."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    DORMANT = "dormant"

    @property
    def colour(self) -> str:
        return _COLOURS[self]


_COLOURS = {ActivityTier.HIGH: "green", ActivityTier.MEDIUM: "yellow", ActivityTier.LOW: "orange",
            ActivityTier.DORMANT: "grey"}


class ValueTier(StrEnum):
    """R-G5: spend over the value window."""

    HIGH = "high"
    MID = "mid"
    LOW = "low"


def _within(at: datetime | None, now: datetime, window: timedelta) -> bool:
    """`at` lies no further back than `window` (a future `at` counts as now)."""
    return at is not None and now - at <= window


def activity_tier(features: ContactFeatures, now: datetime, policy: SegmentPolicy) -> ActivityTier:
    """R-G1: high = replied within 24 h, medium within 3 days, low within 7 days, else dormant."""
    last = features.last_inbound_at
    if _within(last, now, policy.high_within):
        return ActivityTier.HIGH
    if _within(last, now, policy.medium_within):
        return ActivityTier.MEDIUM
    if _within(last, now, policy.low_within):
        return ActivityTier.LOW
    return ActivityTier.DORMANT


def window_spend(features: ContactFeatures, now: datetime, policy: SegmentPolicy, fx: CurrencySettings) -> Spend:
    """R-G5: net spend of the orders paid within the value window (365 days), in the base currency."""
    return convert(features.spend_by_currency(paid_since=now - policy.value_window), fx)


def lifetime_spend(features: ContactFeatures, fx: CurrencySettings) -> Spend:
    """Net spend of every paid order, in the base currency (what has no rate kept apart)."""
    return convert(features.spend_by_currency(), fx)


def value_tier(features: ContactFeatures, now: datetime, policy: SegmentPolicy, fx: CurrencySettings) -> ValueTier:
    """R-G5: converted spend over the window above 5000 is high, from 1000 to 5000 mid, below 1000 low.

    Thresholds are in the base currency; spend without an FX rate does not count (never added raw).
    """
    spend = window_spend(features, now, policy, fx).converted
    if spend > policy.value_high_above:
        return ValueTier.HIGH
    if spend >= policy.value_mid_from:
        return ValueTier.MID
    return ValueTier.LOW


def _complained(features: ContactFeatures, now: datetime, policy: SegmentPolicy) -> bool:
    rated_low = features.last_rating is not None and features.last_rating < policy.complaint_rating_below
    return rated_low and _within(features.last_rating_at, now, policy.complaint_window)


def tags(features: ContactFeatures, now: datetime, policy: SegmentPolicy, fx: CurrencySettings) -> tuple[Tag, ...]:
    """The contact's tags, most important first, at most `policy.max_tags` (R-G9)."""
    out: list[Tag] = [f"activity:{activity_tier(features, now, policy)}"]
    last_order = features.last_order_at
    value = value_tier(features, now, policy, fx) if features.orders else None
    if value is not None:
        out += ["customer", f"value:{value}"]
    else:
        out.append("prospect")
    if features.orders >= policy.loyal_purchases:  # R-G7: 3 purchases → loyal
        out.append("loyal")
    clicked = features.last_click_at
    if clicked is not None and (last_order is None or clicked > last_order) and \
            _within(clicked, now, policy.intent_window):  # R-G7: clicked but not bought → high intent
        out.append("intent:high")
    read = features.last_read_at
    if read is not None and (features.last_inbound_at is None or features.last_inbound_at < read):
        out.append("read_no_reply")  # R-G7: read but not replied (a reply of any type counts)
    first_order = features.first_order_at
    if first_order is not None and policy.cross_sell_after <= now - first_order <= policy.cross_sell_until:
        out.append("cross_sell")  # R-G7: 7 days after the first purchase
    recent_return = _within(features.last_return_at, now, policy.recent_return_window)
    if recent_return:
        out.append("recent_return")
    complained = _complained(features, now, policy)
    if complained:
        out.append("complaint")
    if value is ValueTier.HIGH and (complained or recent_return):
        out.append("vip_recovery")  # R-G8: high spend with a recent complaint
    if features.opted_in is False:
        out.append("opted_out")
    return tuple(out[: policy.max_tags])


def next_change_at(features: ContactFeatures, now: datetime, policy: SegmentPolicy) -> datetime | None:
    """The next instant after `now` at which time alone changes the tier or tags (R-G10 decay)."""
    candidates: list[datetime] = []

    def after(at: datetime | None, window: timedelta) -> None:
        if at is not None:
            candidates.append(at + window + _TICK)

    for window in (policy.high_within, policy.medium_within, policy.low_within):
        after(features.last_inbound_at, window)
    for order in features.paid_orders:
        after(order.paid_at, policy.value_window)
    after(features.last_click_at, policy.intent_window)
    after(features.last_return_at, policy.recent_return_window)
    after(features.last_rating_at, policy.complaint_window)
    if features.first_order_at is not None:
        candidates.append(features.first_order_at + policy.cross_sell_after)
        after(features.first_order_at, policy.cross_sell_until)
    future = [c for c in candidates if c > now]
    return min(future) if future else None
