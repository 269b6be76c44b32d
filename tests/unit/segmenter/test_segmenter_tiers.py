"""R-G1 activity tiers, R-G5 value tiers, R-G7/R-G8/R-G9 tags and their decay over time."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from segmenter_factories import T0, click, inbound, paid, read, returned

from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures, OrderFact, evolve
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.tiers import (
    ActivityTier,
    ValueTier,
    activity_tier,
    next_change_at,
    tags,
    value_tier,
    window_spend,
)

POLICY = SegmentPolicy()
EUR = CurrencySettings()  # base EUR, no rates: the tests' orders are all in EUR
US = timedelta(microseconds=1)
H = timedelta(hours=1)
D = timedelta(days=1)


def fold(*events):
    features = ContactFeatures()
    for ev in events:
        features = evolve(features, ev)
    return features


# R-G1: high = replied within 24 h; medium = within 3 days; low = within 7 days; dormant beyond.
@pytest.mark.parametrize(("since_reply", "tier", "colour"), [
    (timedelta(0), ActivityTier.HIGH, "green"),
    (24 * H, ActivityTier.HIGH, "green"),
    (24 * H + US, ActivityTier.MEDIUM, "yellow"),
    (3 * D, ActivityTier.MEDIUM, "yellow"),
    (3 * D + US, ActivityTier.LOW, "orange"),
    (7 * D, ActivityTier.LOW, "orange"),
    (7 * D + US, ActivityTier.DORMANT, "grey"),
    (400 * D, ActivityTier.DORMANT, "grey"),
    (-H, ActivityTier.HIGH, "green"),  # a reply stamped slightly in the future counts as now
])
def test_activity_tier_follows_time_since_last_reply_rg1(since_reply, tier, colour):
    features = fold(inbound(at=T0))
    got = activity_tier(features, T0 + since_reply, POLICY)
    assert got is tier
    assert got.colour == colour


def test_contact_that_never_replied_is_dormant_rg1():
    features = fold(click(at=T0), read(at=T0))
    assert activity_tier(features, T0, POLICY) is ActivityTier.DORMANT


def test_activity_tier_uses_latest_reply_even_when_replies_arrive_out_of_order():
    features = fold(inbound(at=T0), inbound(at=T0 - 10 * D))
    assert features.last_inbound_at == T0
    assert activity_tier(features, T0 + H, POLICY) is ActivityTier.HIGH


# R-G5: high > 5000, mid 1000–5000, low < 1000 (spend in the last 365 days).
@pytest.mark.parametrize(("amount", "tier"), [
    (0.0, ValueTier.LOW),
    (999.99, ValueTier.LOW),
    (1000.0, ValueTier.MID),
    (5000.0, ValueTier.MID),
    (5000.01, ValueTier.HIGH),
])
def test_value_tier_thresholds_rg5(amount, tier):
    assert value_tier(fold(paid("o1", amount, at=T0)), T0, POLICY, EUR) is tier


@pytest.mark.parametrize(("age", "counted"), [(365 * D, True), (365 * D + US, False)])
def test_value_tier_counts_only_the_last_365_days_rg5(age, counted):
    features = fold(paid("old", 6000.0, at=T0 - age))
    assert (window_spend(features, T0, POLICY, EUR).converted == Decimal("6000.0")) is counted
    assert features.spend_by_currency().get("EUR", 0) == Decimal("6000.0")  # lifetime spend keeps it


def test_returns_reduce_spend_and_a_repeated_return_is_subtracted_once():
    features = fold(paid("o1", 6000.0, at=T0), returned("o1", 1500.0, at=T0 + H), returned("o1", 1500.0, at=T0 + 2 * H))
    assert features.spend_by_currency().get("EUR", 0) == Decimal("4500.0")
    assert features.returns == 1
    assert value_tier(features, T0 + 3 * H, POLICY, EUR) is ValueTier.MID


def test_a_return_never_makes_an_order_negative():
    features = fold(paid("o1", 100.0), returned("o1", 250.0))
    assert features.spend_by_currency().get("EUR", 0) == 0


def test_return_before_its_payment_still_nets_out():
    features = fold(returned("o1", 40.0, at=T0 + H), paid("o1", 100.0, at=T0))
    assert features.orders == 1
    assert features.spend_by_currency().get("EUR", 0) == Decimal("60.0")


def test_thresholds_come_from_the_policy():
    policy = SegmentPolicy(value_high_above=Decimal(100), value_mid_from=Decimal(50))
    assert value_tier(fold(paid("o1", 150.0)), T0, policy, EUR) is ValueTier.HIGH


def test_policy_rejects_shrinking_activity_windows():
    with pytest.raises(ValueError):
        SegmentPolicy(high_within=4 * D, medium_within=3 * D)


# R-G7: 3 purchases → loyal; a payment signal arriving twice is one order.
@pytest.mark.parametrize(("orders", "loyal"), [(1, False), (2, False), (3, True), (4, True)])
def test_loyal_from_third_purchase_rg7(orders, loyal):
    features = fold(*(paid(f"o{i}", 10.0, at=T0 + i * H) for i in range(orders)))
    assert ("loyal" in tags(features, T0 + D, POLICY, EUR)) is loyal


def test_duplicate_payment_counts_one_order_and_one_amount():
    features = fold(paid("o1", 10.0), paid("o1", 10.0), paid("o1", 10.0))
    assert features.orders == 1
    assert features.spend_by_currency().get("EUR", 0) == Decimal("10.0")
    assert "loyal" not in tags(features, T0, POLICY, EUR)


def test_interactions_are_inbound_messages_plus_clicks():
    features = fold(inbound(), inbound(), click(), read())
    assert (features.inbound_messages, features.link_clicks, features.interactions) == (2, 1, 3)


@pytest.mark.parametrize(("events", "now", "expected", "absent"), [
    ((click(at=T0),), T0 + D, {"intent:high", "prospect"}, {"customer"}),
    ((paid("o1", 5.0, at=T0), click(at=T0 + H)), T0 + D, {"intent:high", "customer"}, set()),
    ((click(at=T0), paid("o1", 5.0, at=T0 + H)), T0 + D, set(), {"intent:high"}),
    ((click(at=T0),), T0 + 8 * D, set(), {"intent:high"}),
    ((read(at=T0),), T0 + H, {"read_no_reply"}, set()),
    ((read(at=T0), inbound(at=T0 + H)), T0 + 2 * H, set(), {"read_no_reply"}),
    ((paid("o1", 5.0, at=T0),), T0 + 6 * D, set(), {"cross_sell"}),
    ((paid("o1", 5.0, at=T0),), T0 + 7 * D, {"cross_sell"}, set()),
    ((paid("o1", 5.0, at=T0),), T0 + 31 * D, set(), {"cross_sell"}),
    ((paid("o1", 6000.0, at=T0), returned("o1", 10.0, at=T0 + H)), T0 + D,
     {"value:high", "recent_return", "vip_recovery"}, set()),
    ((paid("o1", 900.0, at=T0), returned("o1", 10.0, at=T0 + H)), T0 + D, {"recent_return"}, {"vip_recovery"}),
])
def test_tags_follow_the_rules_rg7_rg8(events, now, expected, absent):
    got = set(tags(fold(*events), now, POLICY, EUR))
    assert expected <= got
    assert not (absent & got)


def test_low_rating_is_a_complaint_and_makes_high_spenders_vip_recovery_rg8():
    from segmenter_factories import event
    features = fold(paid("o1", 6000.0, at=T0), event("feedback.submitted", rating=2, at=T0 + H))
    assert {"complaint", "vip_recovery"} <= set(tags(features, T0 + D, POLICY, EUR))


def test_opted_out_contact_is_tagged():
    from segmenter_factories import event
    features = fold(event("contact.updated", opted_in=False))
    assert "opted_out" in tags(features, T0, POLICY, EUR)


# --- invariants -------------------------------------------------------------------------------------

_times = st.integers(min_value=-400 * 24, max_value=400 * 24).map(lambda h: T0 + timedelta(hours=h))
_orders = st.lists(st.builds(
    lambda i, amount, at, ret: OrderFact(order_id=f"o{i}", amount=Decimal(amount), currency="EUR", paid_at=at,
                                         returned=Decimal(ret), returned_at=at + D if ret else None),
    st.integers(0, 50), st.integers(0, 20_000), _times, st.integers(0, 100)),
    max_size=8, unique_by=lambda o: o.order_id)
features_strategy = st.builds(
    ContactFeatures,
    last_inbound_at=st.none() | _times, last_read_at=st.none() | _times, last_click_at=st.none() | _times,
    last_rating=st.none() | st.integers(1, 5), last_rating_at=_times, opted_in=st.none() | st.booleans(),
    inbound_messages=st.integers(0, 5), link_clicks=st.integers(0, 5), order_history=_orders.map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(features=features_strategy, now=_times, max_tags=st.integers(1, 15))
def test_never_more_tags_than_the_policy_allows_rg9(features, now, max_tags):
    policy = SegmentPolicy(max_tags=max_tags)
    got = tags(features, now, policy, EUR)
    assert len(got) <= max_tags
    assert len(set(got)) == len(got)


@settings(max_examples=200, deadline=None)
@given(features=features_strategy, now=_times, fraction=st.floats(0, 1))
def test_nothing_changes_before_the_next_change_time_rg10(features, now, fraction):
    change = next_change_at(features, now, POLICY)
    horizon = change - US if change is not None else now + 1000 * D
    later = now + (horizon - now) * fraction
    assert tags(features, later, POLICY, EUR) == tags(features, now, POLICY, EUR)
    assert activity_tier(features, later, POLICY) == activity_tier(features, now, POLICY)


def test_next_change_is_when_the_contact_drops_a_tier():
    features = fold(inbound(at=T0))
    change = next_change_at(features, T0, POLICY)
    assert change == T0 + 24 * H + US
    assert activity_tier(features, change, POLICY) is ActivityTier.MEDIUM
