"""Contact features: identities joined by phone, folds independent of order, handler idempotency."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from segmenter_factories import (
    OTHER_PHONE,
    PHONE,
    T0,
    FakeStore,
    click,
    event,
    inbound,
    paid,
    read,
    record,
    returned,
)

from scrm_common.clock import FixedClock
from scrm_common.kafka.consumer import Item
from segmenter.adapters.http import contact_view
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures, evolve, merge
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.roster import Roster
from segmenter.handlers import ApplyEvents, RefreshTiers, SegmenterMetrics

POLICY = SegmentPolicy()
H = timedelta(hours=1)


def test_whatsapp_first_contact_is_absorbed_when_the_shop_names_it():
    roster = Roster({}, {})
    roster.record("shop", inbound(external_id=None, phone=PHONE, at=T0))
    assert set(roster.contacts) == {("shop", PHONE)}
    roster.record("shop", paid("o1", 20.0, external_id="cust-1", phone=PHONE, name="Anna", at=T0 + H))
    assert set(roster.contacts) == {("shop", "cust-1")}
    merged = roster.contacts[("shop", "cust-1")]
    assert (merged.inbound_messages, merged.orders, merged.name, merged.phone) == (1, 1, "Anna", PHONE)
    assert merged.first_seen == T0
    assert roster.aliases[("shop", f"phone:{PHONE}")] == "cust-1"
    assert roster.aliases[("shop", "ext:cust-1")] == "cust-1"


def test_webhook_events_reach_the_shop_contact_through_its_phone():
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=PHONE))
    key = roster.record("shop", read(external_id=None, phone=PHONE, at=T0 + H))
    assert key == "cust-1"
    assert roster.contacts[("shop", "cust-1")].last_read_at == T0 + H
    assert set(roster.contacts) == {("shop", "cust-1")}


def test_two_shop_ids_with_one_number_are_one_person():
    """Issue 5: guest-777 then cust-777 with the same phone is one contact; both ids are its aliases."""
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="guest-777", phone=PHONE, name="Anna"))
    roster.record("shop", event("contact.created", external_id="cust-777", phone=PHONE))
    roster.record("shop", inbound(external_id=None, phone=PHONE))
    assert set(roster.contacts) == {("shop", "guest-777")}
    person = roster.contacts[("shop", "guest-777")]
    assert (person.external_id, person.external_ids, person.inbound_messages) == \
        ("guest-777", ("cust-777", "guest-777"), 1)
    assert roster.aliases[("shop", "ext:cust-777")] == "guest-777"


def test_tenants_never_share_contacts():
    roster = Roster({}, {})
    roster.record("a", inbound(external_id=None, phone=PHONE))
    roster.record("b", event("contact.created", external_id="cust-1", phone=PHONE))
    assert ("a", PHONE) in roster.contacts and ("b", "cust-1") in roster.contacts
    assert roster.aliases[("a", f"phone:{PHONE}")] == PHONE
    assert roster.aliases[("b", f"phone:{PHONE}")] == "cust-1"
    assert {t for t, _ in roster.contacts} == {"a", "b"}


def test_merge_deduplicates_orders_known_under_both_identities():
    a = evolve(ContactFeatures(), paid("o1", 10.0))
    b = evolve(evolve(ContactFeatures(), paid("o1", 10.0)), returned("o1", 4.0))
    merged = merge(a, b)
    assert merged.orders == 1
    assert merged.spend_by_currency() == {"EUR": Decimal("6.00")}


# Events with distinct ids, the kind whose effect must not depend on arrival order.
_kinds = st.sampled_from(["inbound", "click", "read", "paid", "returned", "paid_dup"])
_event_specs = st.lists(st.tuples(_kinds, st.integers(-500, 500), st.integers(0, 3)), min_size=1, max_size=12)


def _make(kind, hours, n):
    at = T0 + timedelta(hours=hours)
    match kind:
        case "inbound":
            return inbound(at=at)
        case "click":
            return click(at=at)
        case "read":
            return read(at=at)
        case "paid" | "paid_dup":
            return paid(f"o{n}", 100.0 * (n + 1), at=at)
        case _:
            return returned(f"o{n}", 10.0 * (n + 1), at=at)


@settings(max_examples=150, deadline=None)
@given(specs=_event_specs, data=st.data())
def test_features_do_not_depend_on_event_order(specs, data):
    events = [_make(*s) for s in specs]
    shuffled = data.draw(st.permutations(events))

    def fold(evs):
        f = ContactFeatures()
        for ev in evs:
            f = evolve(f, ev)
        return f

    assert fold(events) == fold(shuffled)


def _handler(store, clock):
    registry = CollectorRegistry()
    metrics = SegmenterMetrics(registry)
    return ApplyEvents(store=store, clock=clock, policy=POLICY, metrics=metrics), metrics, registry


def _items(*events, tenant="shop"):
    return [Item(record=None, value=record(ev, tenant)) for ev in events]


async def test_redelivered_events_have_no_second_effect():
    store, clock = FakeStore(), FixedClock(T0 + H)
    handle, _, registry = _handler(store, clock)
    first = inbound(at=T0, event_id="in-1")
    await handle(_items(first, first, paid("o1", 50.0, event_id="pay-1")))
    await handle(_items(first, paid("o1", 50.0, event_id="pay-1"), paid("o1", 50.0, event_id="pay-retry")))
    row = store.contacts[("shop", "cust-1")]
    assert (row.features.inbound_messages, row.features.orders) == (1, 1)
    assert registry.get_sample_value("scrm_segmenter_events_duplicate_total") == 3


async def test_stored_tier_and_tags_are_computed_at_processing_time():
    store, clock = FakeStore(), FixedClock(T0 + H)
    handle, _, _ = _handler(store, clock)
    await handle(_items(inbound(at=T0)))
    row = store.contacts[("shop", "cust-1")]
    assert row.activity_tier == "high"
    assert row.tags[0] == "activity:high"
    assert row.refresh_at == T0 + timedelta(hours=24, microseconds=1)


async def test_refresh_rewrites_tiers_that_time_changed_rg10():
    store, clock = FakeStore(), FixedClock(T0)
    handle, metrics, _ = _handler(store, clock)
    await handle(_items(inbound(at=T0)))
    refresher = RefreshTiers(store=store, clock=clock, policy=POLICY, metrics=metrics, interval_seconds=1,
                             batch=10)
    assert await refresher.refresh_once() == 0
    clock.advance(timedelta(days=8))
    assert await refresher.refresh_once() == 1
    row = store.contacts[("shop", "cust-1")]
    assert row.activity_tier == "dormant"
    assert row.refresh_at is None
    assert await refresher.refresh_once() == 0


async def test_a_failed_batch_leaves_nothing_behind():
    store, clock = FakeStore(), FixedClock(T0)
    handle, _, _ = _handler(store, clock)
    store.contacts[("shop", "cust-1")] = None  # type: ignore[assignment]  # makes load fail mid-batch
    with pytest.raises(AttributeError):
        await handle(_items(inbound(event_id="in-x")))
    assert store.inbox == set()


def test_view_shows_tier_against_now_and_tags():
    features = evolve(evolve(ContactFeatures(), inbound(at=T0)), paid("o1", 1200.0, at=T0, phone=OTHER_PHONE))
    view = contact_view("shop", "cust-1", features, T0 + timedelta(days=2), POLICY, CurrencySettings())
    assert view.activity.tier == "medium"
    assert view.activity.colour == "yellow"
    assert view.features.value_tier == "mid"
    assert view.features.spend == Decimal("1200.00")
    assert view.features.spend_currency == "EUR"
    assert view.contact.phone == OTHER_PHONE
    assert "activity:medium" in view.tags
