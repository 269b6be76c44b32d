"""R-T1 welcome: personal or generic greeting, a stable 7-day code, within 15 minutes of the contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.domain.templates import Template, render
from trigger_engine.domain.decide import decide, evolve
from trigger_engine.domain.decisions import Send, Suppress
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.names import first_name
from trigger_engine.domain.welcome import WelcomeSettings, discount_code

from .factories import PHONE, T0, TENANT, catalog_body, config, contact_created, profile


def welcome(p: ContactProfile, *, at: datetime = T0, now: datetime | None = None, cfg: EngineConfig | None = None):
    (decision,) = decide(p, contact_created(at=at), now or at + timedelta(seconds=5), cfg or config())
    return decision


def rendered(send: Send) -> str:
    template = Template(send.template, send.language, "marketing", catalog_body(send.template, send.language))
    return render(template, send.parameters)


def test_named_contact_gets_personal_welcome_with_first_name():
    decision = welcome(profile(name="Anna Schmidt"))
    assert isinstance(decision, Send)
    assert decision.flow == "welcome"
    assert decision.category == "marketing"
    assert decision.template == "welcome"
    assert decision.parameters[0] == "Anna"
    assert decision.parameters[1] == "10"
    assert decision.parameters[2].startswith("WELCOME10-")
    assert rendered(decision).startswith("Hi Anna, welcome! Enjoy 10% off")


@pytest.mark.parametrize("name", [None, "", "   ", "\t\n", "{{1}}", "{{first_name}}", "{name}", "123", "-", "..."])
def test_missing_blank_or_placeholder_name_falls_back_to_generic_welcome(name):
    decision = welcome(profile(name=name))
    assert isinstance(decision, Send)
    assert decision.template == "welcome_generic"
    assert len(decision.parameters) == 3
    assert all(p.strip() for p in decision.parameters)
    body = rendered(decision)
    assert "{{" not in body
    assert body.startswith("Welcome! Enjoy 10% off")


@pytest.mark.parametrize(("name", "locale", "opening"), [
    ("Dr. Maria Schmidt", None, "Hi Maria, welcome!"),  # not "Hi Dr.,"
    ("MÜLLER, ANNA", None, "Hi Anna, welcome!"),  # not "Hi MÜLLER,,"
    ("Frau Prof. Dr. Eva Klein", "de-DE", "Hallo Eva, willkommen!"),
    ("Herr Müller", "de-DE", "Willkommen!"),  # a title and a surname: the generic greeting
    ("\u202eAnna\u202c", None, "Hi Anna, welcome!"),
])
def test_the_greeting_names_the_first_name_never_a_title_or_surname(name, locale, opening):
    decision = welcome(profile(name=name, locale=locale))
    assert rendered(decision).startswith(opening)


@pytest.mark.parametrize("name", ["%FNAME%", "*|FNAME|*", "[first_name]", "<name>", "null", "undefined", "N/A"])
def test_other_placeholder_syntaxes_fall_back_to_generic_welcome(name):
    decision = welcome(profile(name=name))
    assert isinstance(decision, Send)
    assert decision.template == "welcome_generic"


@pytest.mark.parametrize(("name", "first"), [
    ("Anna", "Anna"), ("  Anna   Schmidt ", "Anna"), ("José María", "José"), ("O'Brien", "O'Brien"),
    ("Jean-Luc Picard", "Jean-Luc"), ("X" + "y" * 59, "X" + "y" * 38 + "…"), (None, None), ("{{1}}", None),
])
def test_first_name_table(name, first):
    assert first_name(name) == first


@given(st.text(max_size=80))
def test_welcome_parameters_are_never_empty_or_unfilled_for_any_name(name):
    decision = welcome(profile(name=name))
    assert isinstance(decision, Send)
    assert all(p.strip() and "{{" not in p for p in decision.parameters)
    assert "{{" not in rendered(decision)


def test_code_is_stable_per_contact_and_differs_across_contacts():
    first = welcome(profile("cust-1"))
    again = welcome(profile("cust-1"), at=T0 + timedelta(hours=1))
    other = welcome(profile("cust-2"))
    assert first.parameters[-2] == again.parameters[-2]
    assert first.parameters[-2] != other.parameters[-2]
    assert first.idempotency_key == again.idempotency_key == f"{TENANT}|welcome|cust-1"


@given(st.text(min_size=1, max_size=40))
def test_discount_code_is_a_pure_function_of_tenant_and_contact(contact_key):
    code = discount_code(TENANT, contact_key, "WELCOME", 10)
    assert code == discount_code(TENANT, contact_key, "WELCOME", 10)
    assert code.startswith("WELCOME10-") and len(code) == len("WELCOME10-") + 6


def test_discount_codes_of_a_thousand_contacts_are_distinct():
    codes = {discount_code(TENANT, f"cust-{i}", "WELCOME", 10) for i in range(1000)}
    assert len(codes) == 1000
    assert discount_code("other", "cust-1", "WELCOME", 10) != discount_code(TENANT, "cust-1", "WELCOME", 10)


@pytest.mark.parametrize(("locale", "valid_until"), [
    (None, "Mar 8, 2026"), ("en-US", "Mar 8, 2026"), ("en-GB", "8 Mar 2026"), ("de-DE", "08.03.2026"),
    ("de-AT", "08.03.2026"), ("de-CH", "08.03.2026"), ("fr-FR", "Mar 8, 2026"),
])
def test_code_is_valid_seven_days_from_the_contact_creation(locale, valid_until):
    decision = welcome(profile(locale=locale), at=T0)
    assert decision.parameters[-1] == valid_until


@pytest.mark.parametrize("written", ["2026-03-01T12:30:00Z", "2026-03-02T01:30:00+13:00",
                                     "2026-03-01T07:30:00-05:00"])
@pytest.mark.parametrize(("contact", "valid_until"), [
    ({"timezone": "Pacific/Auckland"}, "Mar 9, 2026"),  # 01:30 on 2 March there, +7 days
    ({"phone": "+64211234567"}, "Mar 9, 2026"),  # no zone given: the number's country's
    ({"timezone": "Europe/Berlin", "locale": "de-DE"}, "08.03.2026"),
    ({"timezone": "America/Los_Angeles"}, "Mar 8, 2026"),
    ({}, "Mar 8, 2026"),  # a German number: Europe/Berlin
])
def test_valid_until_is_the_date_in_the_contacts_zone_whatever_offset_the_event_was_written_with(
        written, contact, valid_until):
    event = contact_created(at=written)
    (decision,) = decide(profile(**contact), event, event.occurred_at + timedelta(seconds=5), config())
    assert isinstance(decision, Send)
    assert decision.parameters[-1] == valid_until


def test_code_validity_follows_config():
    cfg = config(WelcomeSettings(code_valid_days=30, discount_percent=15))
    decision = welcome(profile(), cfg=cfg)
    assert decision.parameters[-1] == "Mar 31, 2026"
    assert decision.parameters[-2].startswith("WELCOME15-")


@pytest.mark.parametrize(("age", "sent"), [
    (timedelta(0), True), (timedelta(minutes=5), True), (timedelta(minutes=15), True),
    (timedelta(minutes=15, seconds=1), False), (timedelta(hours=2), False),
])
def test_welcome_expires_fifteen_minutes_after_the_contact_was_created(age, sent):
    decision = welcome(profile(), at=T0, now=T0 + age)
    if sent:
        assert isinstance(decision, Send)
    else:
        assert isinstance(decision, Suppress)
        assert decision.reason.startswith("expired")


@pytest.mark.parametrize(("opted_in", "sent"), [(True, True), (None, True), (False, False)])
def test_contact_that_did_not_opt_in_gets_no_welcome(opted_in, sent):
    decision = welcome(profile(opted_in=opted_in))
    assert isinstance(decision, Send) is sent
    if not sent:
        assert "opted in" in decision.reason


def test_contact_without_phone_gets_no_welcome():
    decision = welcome(profile(phone=None))
    assert isinstance(decision, Suppress)
    assert "phone" in decision.reason


def test_disabled_welcome_is_suppressed():
    decision = welcome(profile(), cfg=config(WelcomeSettings(enabled=False)))
    assert isinstance(decision, Suppress)


@pytest.mark.parametrize(("locale", "language"), [
    ("de-DE", "de"), ("de", "de"), ("de_AT", "de"), ("en-GB", "en_US"), ("en_US", "en_US"), ("en", "en_US"),
    ("fr-FR", "en_US"), ("pt-BR", "en_US"), (None, "en_US"), ("", "en_US"),
])
def test_template_language_follows_the_contacts_locale(locale, language):
    assert config().language_for(locale, WelcomeSettings().templates) == language


def test_welcome_is_in_the_contacts_language():
    decision = welcome(profile(locale="de-DE", name="Jonas"))
    assert decision.language == "de"
    assert rendered(decision).startswith("Hallo Jonas, willkommen! 10 % Rabatt")


# --- evolve ---------------------------------------------------------------------------------------

def test_evolve_merges_contact_fields_from_the_event():
    event = contact_created(name="Anna", locale="de-DE", opted_in=True)
    after = evolve(ContactProfile("cust-1"), event)
    assert after == ContactProfile("cust-1", phone=PHONE, name="Anna", locale="de-DE", opted_in=True,
                                   created_at=event.occurred_at)


def test_evolve_never_erases_a_known_phone_or_name_with_none():
    known = ContactProfile("cust-1", phone=PHONE, name="Anna", locale="de-DE", opted_in=True, created_at=T0)
    event = contact_created(phone=None, name=None, locale=None)
    assert evolve(known, event) == known


def test_evolve_takes_a_later_opt_out():
    known = ContactProfile("cust-1", phone=PHONE, opted_in=True)
    assert evolve(known, contact_created(opted_in=False)).opted_in is False


@given(st.lists(st.tuples(st.sampled_from([None, PHONE, "+4915198765432"]), st.sampled_from([None, "Anna", "Ben"]),
                          st.sampled_from([None, True, False])), max_size=10))
def test_evolve_keeps_the_last_known_value_of_each_field(changes):
    state = ContactProfile("cust-1")
    last_phone = last_name = last_opt = None
    for phone, name, opted_in in changes:
        state = evolve(state, contact_created(external_id="cust-1", phone=phone, name=name, opted_in=opted_in))
        last_phone, last_name = phone or last_phone, name or last_name
        last_opt = opted_in if opted_in is not None else last_opt
        assert (state.phone, state.name, state.opted_in) == (last_phone, last_name, last_opt)


def test_decide_ignores_events_without_a_flow():
    from scrm_common.contracts.events import parse_event

    event = parse_event({"event_id": "x", "type": "contact.updated", "occurred_at": datetime(2026, 1, 1, tzinfo=UTC)
                         .isoformat(), "contact": {"external_id": "cust-1"}})
    assert decide(profile(), event, T0, config()) == ()
