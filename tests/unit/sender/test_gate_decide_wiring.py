"""The pure helpers the dispatcher's gate pass uses (issue 8): the human reason of a deferral, the zone a
contact's local time is read in, stated preferences as the gate takes them, and R-T4.5's reply delays."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scrm_common.contracts.commands import GatePolicy, QuietHours
from sender.domain.gate.decide import (
    DISPATCH,
    ContactState,
    GateMessage,
    History,
    contact_zone,
    deferral_reason,
    gate,
    reply_delays,
    stated_preferences,
)
from sender.domain.gate.verdicts import Defer, Suppress

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_quiet_hours_deferral_names_the_hours_the_zone_and_the_instant_local_and_utc() -> None:
    now = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    message = GateMessage(flow="welcome", category="marketing")
    contact = ContactState(zone=BERLIN)
    verdict = gate(message, contact, History(), now)
    assert verdict == Defer(datetime(2026, 12, 2, 7, 0, tzinfo=UTC), "R-S4")
    assert deferral_reason(verdict, message, contact) == (
        "quiet hours 08:00–22:00 Europe/Berlin: deferred until 2026-12-02 08:00 CET (07:00Z)")


def test_the_reason_names_the_contacts_narrowed_hours_and_the_utc_date_when_it_differs() -> None:
    zone = ZoneInfo("Pacific/Auckland")
    message = GateMessage(flow="cart", category="marketing", policy=GatePolicy(quiet_hours=QuietHours()))
    contact = ContactState(zone=zone, preferred_hours=(time(10), time(12)))
    verdict = Defer(datetime(2026, 12, 1, 21, 0, tzinfo=UTC), "R-S4")  # 10:00 NZDT on Dec 2
    assert deferral_reason(verdict, message, contact) == (
        "quiet hours 10:00–12:00 Pacific/Auckland: deferred until 2026-12-02 10:00 NZDT (2026-12-01 21:00Z)")
    meta = Defer(datetime(2026, 12, 2, 7, 0, tzinfo=UTC), "META-131049")
    assert deferral_reason(meta, message, ContactState(zone=BERLIN)) == (
        "Meta's per-user marketing limit (131049): no marketing before 2026-12-02 08:00 CET (07:00Z)")


def test_the_zone_is_the_contacts_own_then_the_commands_then_the_derived_then_the_numbers() -> None:
    assert contact_zone("Europe/Lisbon", "Europe/Berlin", "Europe/Madrid", "UTC").key == "Europe/Lisbon"
    assert contact_zone(None, "Europe/Berlin", "Europe/Madrid", "UTC").key == "Europe/Berlin"
    assert contact_zone(None, None, "Europe/Madrid", "Europe/Paris").key == "Europe/Madrid"
    assert contact_zone(None, None, None, "Europe/Paris").key == "Europe/Paris"
    assert contact_zone("Not/AZone", "Europe", "", None).key == "UTC"


def test_stated_preferences_are_read_and_nonsense_counts_as_not_stated() -> None:
    assert stated_preferences({"max_promotions_per_week": 2, "max_promotions_per_month": 5,
                               "preferred_hours": "09:00-18:30", "passive": True}) == (
        2, 5, (time(9), time(18, 30)), True)
    assert stated_preferences({}) == (None, None, None, False)
    assert stated_preferences({"max_promotions_per_week": -1, "max_promotions_per_month": True,
                               "preferred_hours": "9 to 5", "passive": "yes"}) == (None, None, None, False)


def test_a_reply_answers_the_latest_message_of_the_kind_and_unanswered_ones_are_left_out() -> None:
    t0 = datetime(2026, 12, 1, 9, tzinfo=UTC)
    sends = [t0, t0 + timedelta(days=1), t0 + timedelta(days=3)]
    inbound = [t0 - timedelta(hours=1), t0 + timedelta(days=1, hours=6), t0 + timedelta(days=1, hours=7)]
    assert reply_delays(sends, inbound) == (timedelta(hours=6),)
    assert reply_delays([t0], [t0 + timedelta(hours=2)]) == (timedelta(hours=2),)
    assert reply_delays([], inbound) == ()


def test_preferred_hours_across_midnight_narrow_the_allowed_ones_even_into_two_pieces() -> None:
    message = GateMessage(flow="promo", category="marketing")
    evening = ContactState(zone=BERLIN, preferred_hours=(time(20), time(1)))  # 20:00–01:00 → 20:00–22:00
    at_1930 = datetime(2026, 12, 1, 18, 30, tzinfo=UTC)
    assert gate(message, evening, History(), at_1930) == Defer(datetime(2026, 12, 1, 19, 0, tzinfo=UTC), "R-S4")
    split = ContactState(zone=BERLIN, preferred_hours=(time(21), time(9)))  # → 08:00–09:00 and 21:00–22:00
    at_1000 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    verdict = gate(message, split, History(), at_1000)
    assert verdict == Defer(datetime(2026, 12, 1, 20, 0, tzinfo=UTC), "R-S4")
    assert isinstance(verdict, Defer)
    assert deferral_reason(verdict, message, split) == (
        "quiet hours 08:00–09:00, 21:00–22:00 Europe/Berlin: deferred until 2026-12-01 21:00 CET (20:00Z)")
    assert gate(message, split, History(), datetime(2026, 12, 1, 7, 30, tzinfo=UTC)) == DISPATCH
    # a tenant window across midnight is narrowed too; no overlap at all: the tenant's window
    night_owls = GateMessage(flow="promo", category="marketing",
                             policy=GatePolicy(quiet_hours=QuietHours(start=time(18), end=time(2))))
    late = ContactState(zone=BERLIN, preferred_hours=(time(23), time(3)))  # → 23:00–02:00
    assert gate(night_owls, late, History(), datetime(2026, 12, 1, 19, 0, tzinfo=UTC)) == Defer(
        datetime(2026, 12, 1, 22, 0, tzinfo=UTC), "R-S4")
    apart = ContactState(zone=BERLIN, preferred_hours=(time(6), time(7)))
    assert gate(night_owls, apart, History(), datetime(2026, 12, 1, 19, 0, tzinfo=UTC)) == DISPATCH


def test_passive_with_a_monthly_limit_of_zero_gets_none() -> None:
    message = GateMessage(flow="promo", category="marketing", policy=GatePolicy(quiet_hours_exempt=True))
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    verdict = gate(message, ContactState(passive=True, max_per_month=0), History(), now)
    assert isinstance(verdict, Suppress) and verdict.rule == "R-S5"
    assert gate(message, ContactState(passive=True), History(), now) == DISPATCH
    once = History(marketing_at=(now - timedelta(days=10),))
    assert isinstance(gate(message, ContactState(passive=True, max_per_month=5), once, now), Suppress)


def test_a_withdrawn_message_is_suppressed_withdrawn_before_any_other_rule() -> None:
    now = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
    message = GateMessage(flow="welcome", category="marketing", expires_at=now, withdrawn="first purchase")
    assert gate(message, ContactState(zone=BERLIN), History(), now) == Suppress("WITHDRAWN", "first purchase")


def test_after_a_131049_block_one_marketing_message_is_in_flight_until_one_is_delivered() -> None:
    from sender.domain.gate.decide import ONCE_WAIT, once_since
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    ended = now - timedelta(hours=1)
    since = now - timedelta(days=30)
    assert once_since(ended, [], now, since) == ended
    assert once_since(ended, [(ended + timedelta(minutes=5), True)], now, since) is None  # one was delivered
    assert once_since(ended, [(ended - timedelta(hours=30), True)], now, since) == ended  # delivered before: no
    assert once_since(now + timedelta(hours=1), [], now, since) is None  # still blocked: rule 5's first half
    assert once_since(since - timedelta(seconds=1), [], now, since) is None  # ended before what is known
    message = GateMessage(flow="cart", category="marketing", policy=GatePolicy(quiet_hours_exempt=True))
    contact = ContactState(zone=BERLIN, blocked_until=ended, once_since=ended)
    assert gate(message, contact, History(), now) == DISPATCH
    probe = now - timedelta(minutes=10)
    assert gate(message, contact, History(marketing_at=(probe,)), now) == Defer(probe + ONCE_WAIT, "META-131049")
    assert gate(message, contact, History(marketing_at=(probe - ONCE_WAIT,)), now) == DISPATCH  # silent 24 h
    expiring = GateMessage(flow="welcome", category="marketing", expires_at=now + timedelta(minutes=15))
    assert isinstance(gate(expiring, contact, History(marketing_at=(probe,)), now), Suppress)
