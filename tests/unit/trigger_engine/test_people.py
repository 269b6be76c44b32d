"""One contact per person (issue 5 §2): aliases, resolving an event to its person, the shop's name kept
apart from the WhatsApp profile name, number changes and the customer's marketing choice."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scrm_common.contracts.events import Event, parse_event
from trigger_engine.domain.decide import absorb, decide, evolve, person_key_moves
from trigger_engine.domain.decisions import Decision, Send, Suppress, Withdraw
from trigger_engine.domain.identity import (
    aliases_of,
    current_numbers,
    event_aliases,
    lock_names,
    reachable_phone,
    resolve,
    text_aliases,
    touched_aliases,
)
from trigger_engine.domain.model import ContactProfile
from trigger_engine.domain.welcome import greeting_name

from .factories import (
    PHONE,
    T0,
    TENANT,
    config,
    contact_created,
    contact_updated,
    inbound,
    marketing_changed,
    number_changed,
    payment,
)


class Engine:
    """The handler's load → resolve → evolve → decide loop, in memory, with its idempotency keys."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.profiles: dict[str, ContactProfile] = {}
        self.reserved: set[str] = set()

    def apply(self, event: Event, *, now_after: timedelta = timedelta(seconds=1)) -> list[Decision]:
        resolution = resolve(event, self.aliases, self.numbers_of)
        assert resolution is not None
        profile = self.profiles.get(resolution.person) or ContactProfile(resolution.person)
        for other in resolution.absorbed:
            profile = absorb(profile, self.profiles.pop(other, ContactProfile(other)))
            self.aliases = {a: resolution.person if p == other else p for a, p in self.aliases.items()}
            moves = person_key_moves(TENANT, other, resolution.person)
            self.reserved |= {new for old, new in moves.items() if old in self.reserved}
        self.aliases.update(dict.fromkeys(resolution.aliases, resolution.person))
        profile = evolve(profile, event)
        self.profiles[resolution.person] = profile
        decided = []
        for decision in decide(profile, event, event.occurred_at + now_after, config()):
            if isinstance(decision, Send):
                if decision.idempotency_key in self.reserved:
                    continue
                self.reserved.add(decision.idempotency_key)
            decided.append(decision)
        return decided

    def numbers_of(self, person: str) -> frozenset[str]:
        profile = self.profiles.get(person)
        return current_numbers(profile.phone, profile.wa_id) if profile is not None else frozenset()

    def sends(self, events: list[Event]) -> list[Send]:
        return [d for e in events for d in self.apply(e) if isinstance(d, Send)]


# --- aliases -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("contact", "aliases"), [
    ({"external_id": "cust-1"}, ("ext:cust-1",)),
    ({"external_id": "cust-1", "phone": PHONE}, ("ext:cust-1", f"tel:{PHONE}", f"mk:{PHONE[1:]}")),
    ({"wa_id": "5215512345678"}, ("wa:5215512345678", "mk:525512345678")),
    ({"phone": "+525512345678", "wa_id": "5215512345678"},
     ("wa:5215512345678", "tel:+525512345678", "mk:525512345678")),
    ({"wa_id": "551199998888"}, ("wa:551199998888", "mk:5511999998888")),  # Brazil: 8-digit mobile wa_id
    ({"phone": "+5491123456789"}, ("tel:+5491123456789", "mk:541123456789")),  # Argentina: the mobile 9
    ({"user_id": "US.13491208655302741918"}, ("uid:US.13491208655302741918",)),
])
def test_a_contact_is_known_by_every_identity_it_names(contact, aliases):
    event = contact_updated(**contact)
    assert event.contact is not None
    assert aliases_of(event.contact) == aliases


@pytest.mark.parametrize(("identity", "includes"), [
    ("cust-1", "ext:cust-1"),
    ("+525512345678", "mk:525512345678"),
    ("+5215512345678", "mk:525512345678"),
    ("5215512345678", "tel:+525512345678"),
    ("US.1349", "uid:US.1349"),
])
def test_a_person_is_found_by_any_identity_a_user_types(identity, includes):
    assert includes in text_aliases(identity)


@pytest.mark.parametrize(("event", "locks"), [
    (payment(external_id="cust-1", phone=PHONE), ("ext:cust-1", f"num:{PHONE[1:]}")),
    (contact_created(external_id="mx", phone="+525512345678"), ("ext:mx", "num:525512345678")),
    (inbound(wa_id="5215512345678"), ("num:525512345678",)),
    (inbound(wa_id="551187654321"), ("num:5511987654321",)),
    (number_changed(old_wa_id="4915112345678", new_wa_id="4915198765432"),
     ("num:4915112345678", "num:4915198765432")),
])
def test_a_batch_takes_one_lock_per_shop_id_and_per_number(event, locks):
    assert lock_names(event) == locks
    assert len(touched_aliases(event)) > len(locks)  # every form of a number is covered by its one lock


@pytest.mark.parametrize(("identity", "other_number"), [
    ("+5511934567890", "551134567890"),  # a São Paulo mobile is not its landline twin
    ("5561934567890", "556134567890"),
])
def test_a_person_is_not_looked_up_by_another_numbers_form(identity, other_number):
    aliases = text_aliases(identity)
    assert f"tel:+{other_number}" not in aliases and f"wa:{other_number}" not in aliases


@pytest.mark.parametrize(("wa_id", "phone"), [
    ("4915112345678", "+4915112345678"),
    ("5215512345678", "+525512345678"),  # the library rejects +521…: the shop's form is reachable
    ("525512345678", "+525512345678"),
    ("5491123456789", "+5491123456789"),
    ("12", None),
])
def test_a_wa_id_is_reachable_at_its_first_valid_form(wa_id, phone):
    assert reachable_phone(wa_id) == phone


# --- one person, several shop identities -------------------------------------------------------------

def test_guest_then_customer_with_the_same_phone_get_exactly_one_welcome():
    engine = Engine()
    sends = engine.sends([contact_created(external_id="guest-777", phone=PHONE),
                          contact_created(external_id="cust-777", phone=PHONE)])
    assert len(sends) == 1
    assert sends[0].idempotency_key == f"{TENANT}|welcome|guest-777"
    assert engine.aliases["ext:cust-777"] == engine.aliases["ext:guest-777"] == "guest-777"


def test_the_same_person_by_external_id_or_phone_alone_is_one_person():
    engine = Engine()
    engine.apply(contact_created(external_id="cust-1", phone=PHONE, name="Anna"))
    withdraw, confirmation = engine.apply(payment(external_id=None, phone=PHONE))
    assert isinstance(confirmation, Send)
    assert confirmation.contact_key == "cust-1"
    # the first purchase, a second after the welcome: the person's welcome is withdrawn (R-T1)
    assert isinstance(withdraw, Withdraw) and withdraw.idempotency_key == f"{TENANT}|welcome|cust-1"
    assert engine.sends([contact_created(external_id=None, phone=PHONE)]) == []  # no second welcome


def test_two_people_with_different_phones_each_get_their_welcome():
    engine = Engine()
    sends = engine.sends([contact_created(external_id="a", phone=PHONE),
                          contact_created(external_id="b", phone="+4915198765432")])
    assert [s.contact_key for s in sends] == ["a", "b"]
    assert sends[0].parameters[-2] != sends[1].parameters[-2]  # two people, two codes


@pytest.mark.parametrize(("shop_phone", "wa_id"), [
    ("+525512345678", "5215512345678"),  # Mexico: WhatsApp's legacy 1
    ("+5511999998888", "551199998888"),  # Brazil: an account older than the 9th digit
    ("+5491123456789", "541123456789"),  # Argentina: without the mobile 9
    ("+4915112345678", "4915112345678"),  # everywhere else the wa_id is the number's digits
])
def test_a_webhook_naming_only_the_wa_id_reaches_the_person_the_shop_stored(shop_phone, wa_id):
    engine = Engine()
    engine.apply(contact_created(external_id="cust-mx", phone=shop_phone, name="Lucía"))
    engine.apply(inbound(wa_id=wa_id, profile_name="🦄 Lucky"))
    assert set(engine.profiles) == {"cust-mx"}
    person = engine.profiles["cust-mx"]
    assert (person.name, person.profile_name, person.phone, person.wa_id) == ("Lucía", "🦄 Lucky", shop_phone, wa_id)
    assert engine.aliases[f"wa:{wa_id}"] == "cust-mx"


@pytest.mark.parametrize(("first", "second"), [
    # Brazil: a São Paulo landline and the mobile with the same eight digits after its 9
    ({"external_id": "land", "phone": "+551134567890"}, {"external_id": "mob", "phone": "+5511934567890"}),
    ({"external_id": "mob", "phone": "+5511934567890"}, {"external_id": "land", "phone": "+551134567890"}),
    ({"external_id": "land", "phone": "+556134567890"}, {"wa_id": "5561934567890"}),  # Brasília, from WhatsApp
    # Mexico: the shop's number and a different number in WhatsApp's 521 form
    ({"external_id": "mx", "phone": "+525512345678"}, {"wa_id": "5215587654321"}),
    ({"wa_id": "5215587654321"}, {"external_id": "mx", "phone": "+525512345678"}),
    # Argentina: two numbers that differ after the mobile 9
    ({"external_id": "ar", "phone": "+5491123456789"}, {"wa_id": "5491123456780"}),
])
def test_numbers_the_country_rules_do_not_make_one_are_two_people(first, second):
    engine = Engine()
    sends = engine.sends([contact_created(**{"external_id": None, "phone": None, **first}),
                          contact_created(**{"external_id": None, "phone": None, **second})])
    assert len(engine.profiles) == 2, engine.aliases
    assert len({s.contact_key for s in sends}) == len(sends) == 2
    assert sends[0].parameters[-2] != sends[1].parameters[-2]  # two people, two codes


def test_the_country_rule_alone_never_joins_two_known_persons():
    engine = Engine()
    engine.apply(inbound(wa_id="5215512345678", profile_name="Lucky"))  # known only by WhatsApp's 521 form
    engine.apply(contact_created(external_id="cust-1", phone=None, name="Anna"))  # known only by the shop's id
    # The shop gives cust-1 the 52 form of the number: only the Mexico rule links it to the WhatsApp person.
    engine.apply(contact_updated(external_id="cust-1", phone="+525512345678"))
    assert set(engine.profiles) == {"cust-1", "+5215512345678"}
    assert engine.profiles["cust-1"].phone == "+525512345678"
    assert engine.aliases["mk:525512345678"] == "+5215512345678"  # the rule's key stays with who had it
    assert engine.aliases["tel:+525512345678"] == "cust-1"


def test_a_rule_form_finds_a_person_only_when_nothing_exact_does():
    engine = Engine()
    engine.apply(contact_created(external_id="cust-mx", phone="+525512345678"))
    engine.apply(inbound(wa_id="5215512345678"))  # nothing exact: the Mexico rule finds cust-mx
    assert set(engine.profiles) == {"cust-mx"}
    resolution = resolve(inbound(wa_id="5215512345678"), engine.aliases)
    assert resolution is not None and (resolution.person, resolution.absorbed) == ("cust-mx", ())


def test_a_welcomed_person_merged_into_another_identity_is_not_welcomed_again():
    engine = Engine()
    (welcome,) = engine.sends([contact_created(external_id="guest-777", phone=PHONE, name="Anna")])
    engine.apply(contact_updated(external_id="cust-777", name="Anna"))  # the shop's id, no number yet
    # Created late (events reordered): the customer id with the guest's phone — one person, greeted already.
    assert engine.sends([contact_created(external_id="cust-777", phone=PHONE, name="Anna")]) == []
    assert set(engine.profiles) == {"cust-777"}
    assert person_key_moves(TENANT, "guest-777", "cust-777") == {welcome.idempotency_key: f"{TENANT}|welcome|cust-777"}


def test_an_event_naming_two_known_persons_merges_them_into_the_stronger_identity():
    engine = Engine()
    engine.apply(contact_created(external_id="cust-1", phone=PHONE, name="Anna", locale="de-DE"))
    engine.apply(inbound(wa_id="4915198765432", profile_name="Anni"))  # a person known only by WhatsApp
    assert set(engine.profiles) == {"cust-1", "+4915198765432"}
    engine.apply(contact_updated(external_id="cust-1", phone="+4915198765432"))  # the shop: that is Anna's
    assert set(engine.profiles) == {"cust-1"}
    anna = engine.profiles["cust-1"]
    assert (anna.phone, anna.name, anna.profile_name, anna.locale) == ("+4915198765432", "Anna", "Anni", "de-DE")
    assert {p for a, p in engine.aliases.items() if a.startswith(("wa:", "tel:", "ext:"))} == {"cust-1"}


def test_absorbing_fills_gaps_and_keeps_the_later_marketing_choice():
    person = ContactProfile("a", phone=PHONE, name="Anna", marketing="resume", marketing_changed_at=T0)
    other = ContactProfile("b", phone="+4915198765432", name="Ann", locale="de-DE", wa_id="4915198765432",
                           marketing="stop", marketing_changed_at=T0 + timedelta(days=1))
    merged = absorb(person, other)
    assert (merged.contact_key, merged.phone, merged.name) == ("a", PHONE, "Anna")
    assert (merged.locale, merged.wa_id, merged.marketing) == ("de-DE", "4915198765432", "stop")
    assert absorb(other, person).marketing == "stop"


# --- the shop's name and the WhatsApp profile name ---------------------------------------------------

def test_the_whatsapp_profile_name_never_overwrites_the_shops_name():
    known = ContactProfile("cust-1", phone=PHONE, name="Anna Schmidt")
    after = evolve(known, inbound(wa_id=PHONE[1:], profile_name="🦄 Lucky"))
    assert (after.name, after.profile_name) == ("Anna Schmidt", "🦄 Lucky")
    assert greeting_name(after) == "Anna"


@pytest.mark.parametrize(("name", "profile_name", "greeting"), [
    ("Anna Schmidt", "🦄 Lucky", "Anna"),
    (None, "🦄 Lucky", "Lucky"),  # the shop gave no name: the profile name greets
    ("   ", "Maria José", "Maria"),
    ("Herr Müller", "Hans", None),  # the shop's name wins even when it gives no first name
    (None, None, None),
])
def test_the_profile_name_greets_only_when_the_shop_gave_no_name(name, profile_name, greeting):
    assert greeting_name(ContactProfile("c", name=name, profile_name=profile_name)) == greeting


def test_a_welcome_for_a_contact_the_shop_did_not_name_uses_the_profile_name():
    engine = Engine()
    engine.apply(inbound(wa_id=PHONE[1:], profile_name="🦄 Lucky"))
    (welcome,) = engine.sends([contact_created(external_id="cust-9", phone=PHONE)])
    assert welcome.template == "welcome" and welcome.parameters[0] == "Lucky"


# --- phones: the shop's form kept, number changes -----------------------------------------------------

def test_whatsapps_other_form_of_the_number_does_not_replace_the_shops():
    known = ContactProfile("cust-mx", phone="+525512345678")
    after = evolve(known, contact_updated(external_id="cust-mx", phone="+5491123456789"))
    assert after.phone == "+5491123456789"  # a different number: the shop changed it
    argentina = ContactProfile("cust-ar", phone="+5491123456789")
    assert evolve(argentina, contact_updated(external_id="cust-ar", phone="+541123456789")).phone == "+5491123456789"


@pytest.mark.parametrize(("old", "new", "phone"), [
    ("4915112345678", "4915198765432", "+4915198765432"),
    ("525512345678", "5215587654321", "+525587654321"),  # the new wa_id's reachable form
])
def test_a_number_change_moves_the_person_and_keeps_the_old_number_as_an_alias(old, new, phone):
    engine = Engine()
    engine.apply(contact_created(external_id="cust-1", phone="+" + old, name="Anna"))
    engine.apply(number_changed(old_wa_id=old, new_wa_id=new, at=T0 + timedelta(days=1)))
    person = engine.profiles["cust-1"]
    assert (person.phone, person.wa_id, person.name) == (phone, new, "Anna")
    for alias in (f"wa:{new}", f"tel:{phone}", f"tel:+{old}", "ext:cust-1"):
        assert engine.aliases[alias] == "cust-1", alias
    (confirmation,) = engine.apply(payment(phone=None, at=T0 + timedelta(days=2)))
    assert isinstance(confirmation, Send) and confirmation.to == phone


@pytest.mark.parametrize("later", ["contact.created", "payment"])
def test_a_former_number_the_shop_gives_to_someone_else_is_handed_over(later):
    engine = Engine()
    engine.apply(contact_created(external_id="anna", phone="+4915112345678", name="Anna"))
    engine.apply(number_changed(old_wa_id="4915112345678", new_wa_id="4915198765432", at=T0 + timedelta(days=1)))
    # The carrier gave Anna's old number to Carl; the shop says so.
    at = T0 + timedelta(days=30)
    carl = (contact_created(external_id="carl", phone="+4915112345678", name="Carl", at=at) if later == "contact.created"
            else payment(external_id="carl", phone="+4915112345678", order_id="C-1", at=at))
    (decision,) = engine.apply(carl)
    assert isinstance(decision, Send) and (decision.contact_key, decision.to) == ("carl", "+4915112345678")
    assert set(engine.profiles) == {"anna", "carl"}
    anna = engine.profiles["anna"]
    assert (anna.name, anna.phone) == ("Anna", "+4915198765432")
    for alias in ("tel:+4915112345678", "wa:4915112345678", "mk:4915112345678"):
        assert engine.aliases[alias] == "carl", alias
    (confirmation,) = engine.apply(payment(external_id="anna", phone=None, order_id="A-2", at=at))
    assert isinstance(confirmation, Send) and confirmation.to == "+4915198765432"  # never to Carl


def test_a_late_webhook_from_a_former_number_still_reaches_its_person():
    engine = Engine()
    engine.apply(contact_created(external_id="anna", phone="+4915112345678", name="Anna"))
    engine.apply(number_changed(old_wa_id="4915112345678", new_wa_id="4915198765432", at=T0 + timedelta(days=1)))
    engine.apply(inbound(wa_id="4915112345678", at=T0 + timedelta(days=1)))  # WhatsApp names no shop id
    assert set(engine.profiles) == {"anna"}


@pytest.mark.parametrize("late", [
    {"wa_id": "4915112345678", "phone": "+4915112345678"},  # as ingest writes a webhook's contact
    {"wa_id": "4915112345678"},
    {"phone": "+4915112345678"},
])
def test_a_late_webhook_from_the_former_number_does_not_move_the_person_back(late):
    engine = Engine()
    engine.apply(contact_created(external_id="anna", phone="+4915112345678", name="Anna"))
    engine.apply(number_changed(old_wa_id="4915112345678", new_wa_id="4915198765432", at=T0 + timedelta(days=1)))
    engine.apply(parse_event({"event_id": "late-1", "type": "message.inbound", "occurred_at": T0.isoformat(),
                              "contact": late, "data": {"type": "text", "text": "hi"}}))
    anna = engine.profiles["anna"]
    assert (anna.phone, anna.wa_id) == ("+4915198765432", "4915198765432")
    (confirmation,) = engine.apply(payment(external_id="anna", phone=None, order_id="A-3", at=T0 + timedelta(days=2)))
    assert isinstance(confirmation, Send) and confirmation.to == "+4915198765432"


@pytest.mark.parametrize(("known", "contact", "phone", "wa_id"), [
    # WhatsApp fills what is missing, and may name the same number in its own form
    (ContactProfile("c"), {"wa_id": "5215512345678"}, "+525512345678", "5215512345678"),
    (ContactProfile("c", phone="+525512345678"), {"wa_id": "5215512345678"}, "+525512345678", "5215512345678"),
    # the shop moves its customer to another number
    (ContactProfile("c", phone=PHONE), {"external_id": "c", "phone": "+4915198765432"}, "+4915198765432", None),
])
def test_numbers_an_event_gives_a_person(known, contact, phone, wa_id):
    after = evolve(known, contact_updated(**contact))
    assert (after.phone, after.wa_id) == (phone, wa_id)


def test_a_number_change_names_the_new_numbers_aliases():
    event = number_changed(old_wa_id="4915112345678", new_wa_id="4915198765432")
    assert event_aliases(event) == ("wa:4915112345678", "mk:4915112345678", "wa:4915198765432",
                                    "tel:+4915198765432", "mk:4915198765432")


# --- the customer's own marketing choice --------------------------------------------------------------

def test_a_customer_who_stopped_marketing_gets_no_welcome_with_that_reason():
    engine = Engine()
    engine.apply(marketing_changed("stop", wa_id=PHONE[1:]))
    (decision,) = engine.apply(contact_created(external_id="cust-1", phone=PHONE, at=T0 + timedelta(minutes=1)))
    assert isinstance(decision, Suppress)
    assert decision.reason == "customer stopped marketing messages"
    assert decision.idempotency_key == f"{TENANT}|welcome|{PHONE}"


def test_order_confirmations_are_not_marketing_and_still_go_out_after_a_stop():
    engine = Engine()
    engine.apply(contact_created(external_id="cust-1", phone=PHONE))
    engine.apply(marketing_changed("stop", wa_id=PHONE[1:]))
    (decision,) = engine.apply(payment())
    assert isinstance(decision, Send) and decision.category == "utility"


@pytest.mark.parametrize(("choices", "stopped"), [
    ([("stop", 0)], True),
    ([("stop", 0), ("resume", 1)], False),
    ([("resume", 1), ("stop", 0)], False),  # an older stop arriving late does not undo a newer resume
    ([("stop", 0), ("signup", 1)], False),
    ([("resume", 0), ("stop", 1)], True),
])
def test_the_latest_marketing_choice_holds(choices, stopped):
    state = ContactProfile("c", phone=PHONE)
    for value, day in choices:
        state = evolve(state, marketing_changed(value, at=T0 + timedelta(days=day)))
    assert state.stopped_marketing is stopped


def test_preferences_of_other_categories_change_nothing():
    state = evolve(ContactProfile("c"), marketing_changed("stop", category="service_messages"))
    assert state.marketing is None


def test_a_resumed_customer_is_welcomed_again_by_a_new_person():
    engine = Engine()
    engine.apply(marketing_changed("stop", wa_id=PHONE[1:]))
    engine.apply(marketing_changed("resume", wa_id=PHONE[1:], at=T0 + timedelta(minutes=1)))
    (welcome,) = engine.sends([contact_created(external_id="c", phone=PHONE, at=T0 + timedelta(minutes=2))])
    assert welcome.flow == "welcome"


# --- events without a contact ------------------------------------------------------------------------

def test_account_events_change_no_profile_and_decide_nothing():
    event = parse_event({"event_id": "acc-1", "type": "account.updated", "occurred_at": T0.isoformat(),
                         "data": {"field": "account_update", "account_id": "100000000000001",
                                  "event": "ACCOUNT_RESTRICTION"}})
    known = ContactProfile("c", phone=PHONE, name="Anna")
    assert evolve(known, event) == known
    assert resolve(event, {}) is None
    assert decide(known, event, T0, config()) == ()
