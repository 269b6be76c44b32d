"""How each event changes a contact's reachability record (pure): profile, window, R-S6 choices, 131049."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scrm_common.contracts.events import Contact
from sender.domain.gate.opt_out import stop_intent
from sender.domain.reachability import (
    Record,
    with_inbound,
    with_marketing_choice,
    with_marketing_limit,
    with_number_change,
    with_profile,
)
from sender.reachability import number_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BERLIN = "4915112345678"


def inbound(record: Record, text: str, at: datetime) -> tuple[Record, bool]:
    """What the handler does with a message.inbound: the window, then the stop/start word if it is one."""
    updated = with_inbound(record, at)
    intent = stop_intent(text)
    if intent is None:
        return updated, False
    return with_marketing_choice(updated, choice="stop" if intent == "stop" else "resume", source="keyword", at=at)


@pytest.mark.parametrize("text", ["STOP", " stopp! ", "Abmelden", "baja", "Arrêter", "BASTA", "afmelden", "DURDUR",
                                  "wypisz", "Descadastrar 🛑", "unsubscribe."])
def test_a_stop_word_in_any_language_opts_out_at_once(text: str) -> None:
    record, applied = inbound(Record(), text, T0)
    assert applied and record.opted_out
    assert (record.opted_out_at, record.opt_out_source, record.marketing_changed_at) == (T0, "keyword", T0)
    assert record.last_inbound_at == T0


@pytest.mark.parametrize("text", ["START", "Starten", "alta", "iniciar", "Démarrer", "iscrivimi", "aanmelden",
                                  "BAŞLA", "wznów"])
def test_a_start_word_resubscribes(text: str) -> None:
    stopped, _ = inbound(Record(), "STOP", T0)
    record, applied = inbound(stopped, text, T0 + timedelta(minutes=1))
    assert applied and not record.opted_out
    assert (record.opt_out_source, record.marketing_changed_at) == (None, T0 + timedelta(minutes=1))


@pytest.mark.parametrize("text", ["stop sending the wrong size", "please stop", "cancel", "no", "Stop? Why?!x"])
def test_a_sentence_containing_stop_is_no_opt_out(text: str) -> None:
    record, applied = inbound(Record(), text, T0)
    assert not applied and not record.opted_out and record.marketing_changed_at is None
    assert record.last_inbound_at == T0  # it still opens the window


def test_newest_choice_wins_by_its_own_time() -> None:
    stopped, _ = with_marketing_choice(Record(), choice="stop", source="user_preferences", at=T0)
    late_resume, applied = with_marketing_choice(stopped, choice="resume", source="keyword", at=T0 - timedelta(hours=1))
    assert not applied and late_resume == stopped  # an older resume arriving late changes nothing
    resumed, applied = with_marketing_choice(stopped, choice="resume", source="user_preferences",
                                             at=T0 + timedelta(hours=1))
    assert applied and not resumed.opted_out
    replay, applied = with_marketing_choice(resumed, choice="resume", source="user_preferences",
                                            at=T0 + timedelta(hours=1))
    assert not applied and replay == resumed  # the same choice again: nothing twice


def test_a_second_stop_keeps_the_first_opt_out_and_its_source() -> None:
    first, _ = with_marketing_choice(Record(), choice="stop", source="error_131050", at=T0)
    again, applied = with_marketing_choice(first, choice="stop", source="keyword", at=T0 + timedelta(days=1))
    assert applied
    assert (again.opted_out_at, again.opt_out_source, again.marketing_changed_at) == (
        T0, "error_131050", T0 + timedelta(days=1))


def test_signup_resubscribes() -> None:
    stopped, _ = with_marketing_choice(Record(), choice="stop", source="user_preferences", at=T0)
    record, applied = with_marketing_choice(stopped, choice="signup", source="user_preferences",
                                            at=T0 + timedelta(seconds=1))
    assert applied and not record.opted_out


def test_the_window_opens_at_the_latest_inbound() -> None:
    record = with_inbound(with_inbound(Record(), T0), T0 - timedelta(hours=2))
    assert record.last_inbound_at == T0
    assert with_inbound(record, T0) == record


def test_profile_sets_the_own_zone_locale_and_preferences() -> None:
    record = with_profile(Record(), number=BERLIN, timezone="America/New_York", locale="de",
                          preferences={"max_promotions_per_week": 1, "passive": None, "colour": "blue"})
    assert (record.timezone, record.zone_derived, record.locale) == ("America/New_York", False, "de")
    assert record.preferences == {"max_promotions_per_week": 1, "colour": "blue"}


def test_profile_without_a_zone_derives_one_and_keeps_an_own_one() -> None:
    derived = with_profile(Record(), number=BERLIN, timezone=None, locale=None, preferences=None)
    assert (derived.timezone, derived.zone_derived, derived.locale) == ("Europe/Berlin", True, None)
    own = with_profile(derived, number=BERLIN, timezone="Asia/Tokyo", locale=None, preferences=None)
    assert (own.timezone, own.zone_derived) == ("Asia/Tokyo", False)
    later = with_profile(own, number=BERLIN, timezone=None, locale="fr", preferences=None)
    assert (later.timezone, later.zone_derived, later.locale) == ("Asia/Tokyo", False, "fr")


def test_unknown_number_zone_is_utc() -> None:
    record = with_profile(Record(), number="999", timezone=None, locale=None, preferences=None)
    assert (record.timezone, record.zone_derived) == ("UTC", True)


def test_preferences_change_only_when_the_event_carries_them() -> None:
    stated = with_profile(Record(), number=BERLIN, timezone=None, locale=None,
                          preferences={"max_promotions_per_month": 2})
    untouched = with_profile(stated, number=BERLIN, timezone=None, locale="de", preferences=None)
    assert untouched.preferences == {"max_promotions_per_month": 2}
    cleared = with_profile(untouched, number=BERLIN, timezone=None, locale=None, preferences={})
    assert cleared.preferences == {} and cleared.locale == "de"


def test_131049_blocks_marketing_for_24_hours_by_the_latest_block() -> None:
    record = with_marketing_limit(Record(), T0)
    assert record.marketing_blocked_until == T0 + timedelta(hours=24)
    assert with_marketing_limit(record, T0 - timedelta(hours=3)) == record
    assert with_marketing_limit(record, T0 + timedelta(hours=1)).marketing_blocked_until == T0 + timedelta(hours=25)


@pytest.mark.parametrize(("contact", "number"), [
    (Contact(phone="+4915112345678"), "4915112345678"),
    (Contact(wa_id="4915112345678"), "4915112345678"),
    (Contact(phone="+525512345678"), "525512345678"),
    (Contact(wa_id="5215512345678"), "525512345678"),  # Mexico's legacy wa_id form: the same key
    (Contact(external_id="cust-1", phone="+4915112345678"), "4915112345678"),
    (Contact(external_id="cust-1"), None),  # no number: cannot be keyed
    (None, None),
])
def test_number_of_a_contact(contact: Contact | None, number: str | None) -> None:
    assert number_of(contact) == number


STOPPED = Record(opted_out_at=T0, opt_out_source="keyword", marketing_changed_at=T0, locale="de",
                 timezone="Europe/Vienna", preferences={"max_promotions_per_week": 1},
                 marketing_blocked_until=T0 + timedelta(hours=24), last_inbound_at=T0)


@pytest.mark.parametrize(("new", "expected"), [
    # a fresh number: everything the customer said moves with them, the window does not (WhatsApp's is per number)
    (Record(), Record(opted_out_at=T0, opt_out_source="keyword", marketing_changed_at=T0, locale="de",
                      timezone="Europe/Vienna", preferences={"max_promotions_per_week": 1},
                      marketing_blocked_until=T0 + timedelta(hours=24))),
    # a newer resume on the new number wins; its own zone, language and preferences stay
    (Record(marketing_changed_at=T0 + timedelta(hours=1), locale="en", timezone="Asia/Tokyo",
            preferences={"passive": True}),
     Record(marketing_changed_at=T0 + timedelta(hours=1), locale="en", timezone="Asia/Tokyo",
            preferences={"passive": True}, marketing_blocked_until=T0 + timedelta(hours=24))),
    # a zone derived from the new number yields to the customer's own
    (Record(timezone="Europe/Berlin", zone_derived=True),
     Record(opted_out_at=T0, opt_out_source="keyword", marketing_changed_at=T0, locale="de",
            timezone="Europe/Vienna", preferences={"max_promotions_per_week": 1},
            marketing_blocked_until=T0 + timedelta(hours=24))),
])
def test_a_number_change_carries_what_the_customer_said(new: Record, expected: Record) -> None:
    assert with_number_change(new, STOPPED) == expected
