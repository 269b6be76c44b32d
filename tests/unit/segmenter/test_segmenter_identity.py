"""Issue 5 in the segmenter: one contact per person, found by any alias; the shop's name kept; replies of any
type count; statuses never invent contacts; a number change moves the person."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from segmenter_factories import PHONE, T0, FakeStore, event, inbound, paid, read, record

from scrm_common.clock import FixedClock
from scrm_common.contracts.events import EVENT_TYPES
from scrm_common.kafka.consumer import Item
from segmenter.domain.aliases import lookup_aliases, valid_phone
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures, evolve
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.roster import APPLY_ONLY, EVENTS_IGNORED, EVENTS_READ, Roster
from segmenter.domain.tiers import activity_tier, tags
from segmenter.handlers import ApplyEvents, SegmenterMetrics

POLICY = SegmentPolicy()
EUR = CurrencySettings()
H = timedelta(hours=1)
MX_PHONE, MX_WA = "+525512345678", "5215512345678"


def webhook(kind: str, wa_id: str, *, at=T0, **kw):
    """A webhook-derived inbound or read status as ingest publishes it: wa_id as given, the phone only
    when the library accepts it, no external id; a status of our message echoes the send's key."""
    contact = {"external_id": None, "phone": valid_phone(wa_id), "wa_id": wa_id, "at": at}
    if kind == "inbound":
        return inbound(**contact, **{k: v for k, v in kw.items() if k not in ("message_id", "status")})
    return event("message.status", **contact, **{"message_id": "wamid.1", "status": "read",
                                                  "idempotency_key": "k-1", **kw})


def _only(roster: Roster, tenant: str = "shop") -> tuple[str, ContactFeatures]:
    found = [(k, f) for (t, k), f in roster.contacts.items() if t == tenant]
    assert len(found) == 1, found
    return found[0]


def _handler(store: FakeStore):
    registry = CollectorRegistry()
    return ApplyEvents(store=store, clock=FixedClock(T0 + 3 * H), policy=POLICY,
                       metrics=SegmenterMetrics(registry)), registry


# --- the acceptance example ---------------------------------------------------------------------------

async def test_a_photo_from_the_521_wa_id_is_the_52_contacts_reply_and_the_shop_name_stays():
    store = FakeStore()
    handle, _ = _handler(store)
    await handle([Item(None, record(e)) for e in (
        paid("o-1", 89.0, external_id="cust-mx", phone=MX_PHONE, name="Lucía", at=T0),
        # the sender's outcome: the number sent to and the wa_id of the send response
        event("message.status", external_id="cust-mx", phone=MX_PHONE, wa_id=MX_WA, at=T0 + H,
              message_id="wamid.oc", status="sent", idempotency_key="k-oc"),
    )])
    await handle([Item(None, record(e)) for e in (
        webhook("read", MX_WA, at=T0 + 2 * H, message_id="wamid.oc", status="read"),
        webhook("inbound", MX_WA, at=T0 + 2 * H + timedelta(seconds=5), type_="image",
                text="Ist der Sneaker noch in 42 da?", profile_name="🦄 Lucky"),
    )])
    assert set(store.contacts) == {("shop", "cust-mx")}
    row = store.contacts[("shop", "cust-mx")]
    assert row.activity_tier == "high"
    assert "read_no_reply" not in row.tags
    f = row.features
    assert (f.name, f.profile_name, f.display_name) == ("Lucía", "🦄 Lucky", "Lucía")
    assert (f.phone, f.wa_id, f.inbound_messages) == (MX_PHONE, MX_WA, 1)
    for ref in ("cust-mx", MX_PHONE, "+" + MX_WA, MX_WA, "+52 55 1234 5678"):
        found = await store.find("shop", ref, lookup_aliases(ref))
        assert found is not None and found[0] == "cust-mx", ref


# --- one person, whichever form of the number WhatsApp uses ---------------------------------------------

@pytest.mark.parametrize(("stored", "wa_id"), [
    ("+525512345678", "5215512345678"),  # Mexico: the legacy mobile 1
    ("+5511987654321", "551187654321"),  # Brazil: an account older than the 9th digit
    ("+5491123456789", "541123456789"),  # Argentina: without the mobile 9
    ("+5491123456789", "5491123456789"),
    ("+4915112345678", "4915112345678"),  # the plain case
])
@pytest.mark.parametrize("kind", ["inbound", "read"])
def test_a_webhook_naming_only_the_wa_id_reaches_the_contact_the_shop_stored(stored, wa_id, kind):
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=stored, name="Anna"))
    key = roster.record("shop", webhook(kind, wa_id, at=T0 + H, message_id="wamid.1", status="read"))
    assert key == "cust-1"
    _, person = _only(roster)
    assert person.phone == stored  # the shop's number is not replaced by WhatsApp's form
    assert (person.inbound_messages, person.last_read_at is not None) == ((1, False) if kind == "inbound"
                                                                          else (0, True))


def test_a_reply_from_another_number_is_another_person():
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=MX_PHONE))
    assert roster.record("shop", webhook("inbound", "5215512345679")) == "+5215512345679"
    assert len(roster.contacts) == 2
    assert roster.contacts[("shop", "cust-1")].inbound_messages == 0


def test_the_send_responses_wa_id_is_learned_even_where_no_country_rule_applies():
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone="+14155550100"))
    roster.record("shop", event("message.status", external_id="cust-1", phone="+14155550100", wa_id="14155550199",
                                message_id="wamid.1", status="sent", idempotency_key="k1"))
    assert roster.record("shop", webhook("inbound", "14155550199", at=T0 + H)) == "cust-1"
    _, person = _only(roster)
    assert (person.phone, person.wa_id, person.inbound_messages) == ("+14155550100", "14155550199", 1)


def test_a_contact_first_known_from_whatsapp_joins_the_shop_contact_when_the_mapping_is_learned():
    roster = Roster({}, {})
    roster.record("shop", webhook("inbound", "14155550199", at=T0))  # wrote before the shop knew them
    roster.record("shop", event("contact.created", external_id="cust-1", phone="+14155550100", at=T0 + H))
    assert len(roster.contacts) == 2  # nothing yet says these are one person
    roster.record("shop", event("message.status", external_id="cust-1", phone="+14155550100", wa_id="14155550199",
                                message_id="wamid.1", status="sent", idempotency_key="k1", at=T0 + 2 * H))
    key, person = _only(roster)
    assert key == "cust-1"
    assert (person.inbound_messages, person.first_seen, person.phone) == (1, T0, "+14155550100")
    assert roster.merged == [("shop", "+14155550199", "cust-1")]
    assert {a for (_, a), k in roster.aliases.items() if k == "cust-1"} >= {
        "ext:cust-1", "phone:+14155550100", "wa:14155550199", "phone:+14155550199"}


@pytest.mark.parametrize("first", ["guest-777", "cust-777"])
def test_two_shop_ids_with_one_number_are_one_person_welcomed_once(first):
    other = {"guest-777": "cust-777", "cust-777": "guest-777"}[first]
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id=first, phone=PHONE, name="Anna Schmidt"))
    roster.record("shop", paid("o1", 10.0, external_id=other, phone=PHONE))
    key, person = _only(roster)
    assert key == first
    assert person.external_ids == ("cust-777", "guest-777")
    assert (person.orders, person.name) == (1, "Anna Schmidt")
    assert roster.record("shop", inbound(external_id=other, phone=None)) == first


def test_two_known_contacts_that_turn_out_to_be_one_person_are_merged():
    roster = Roster({}, {})
    roster.record("shop", paid("o1", 10.0, external_id="cust-1", phone=PHONE))
    roster.record("shop", paid("o2", 20.0, external_id="cust-2", phone="+4915198765432"))
    # the shop now says cust-2's number is cust-1's current number: one person per WhatsApp number
    roster.record("shop", event("contact.updated", external_id="cust-2", phone=PHONE))
    key, person = _only(roster)
    assert key == "cust-2"  # the id the shop named keeps the contact
    assert (person.orders, person.external_ids, person.phone) == (2, ("cust-1", "cust-2"), PHONE)
    assert roster.owner("shop", "ext:cust-1") == roster.owner("shop", "phone:+4915198765432") == "cust-2"


# --- statuses and other platform signals never invent contacts ------------------------------------------

@pytest.mark.parametrize("signal", [
    lambda: webhook("read", "4915112345678", message_id="wamid.agent", status="read"),
    lambda: event("message.status", external_id=None, phone=None, user_id="US.1349120865530274",
                  message_id="wamid.x", status="delivered", idempotency_key="k-x"),
    lambda: event("message.status", no_contact=True, message_id="wamid.y", status="delivered", idempotency_key="k-y"),
    lambda: event("contact.number_changed", external_id=None, phone=None, wa_id="4915112345678",
                  old_wa_id="4915112345678", new_wa_id="4915198765432"),
    lambda: event("contact.marketing_preference_changed", external_id=None, phone=None, wa_id="4915112345678",
                  value="stop"),
    lambda: event("account.updated", no_contact=True, field="account_update", event="ACCOUNT_RESTRICTION"),
], ids=["status-unknown-number", "status-bsuid", "status-no-contact", "number-change", "preference", "account"])
async def test_platform_signals_about_unknown_people_create_no_contact(signal):
    store = FakeStore()
    handle, registry = _handler(store)
    ev = signal()
    await handle([Item(None, record(ev))])
    assert store.contacts == {} and store.aliases == {}
    reason = "no_contact" if ev.contact is None else "unknown_contact"
    assert registry.get_sample_value("scrm_segmenter_events_skipped_total", {"type": ev.type, "reason": reason}) == 1


@pytest.mark.parametrize(("kind", "recipient"), [
    ("read", {"phone": PHONE, "wa_id": PHONE[1:]}),  # the example: a read of the agent app's message
    ("delivered", {"phone": PHONE, "wa_id": PHONE[1:]}),
    ("failed", {"phone": None, "wa_id": PHONE[1:]}),
    ("sent", {"phone": PHONE, "wa_id": "4915100000001"}),  # would otherwise teach the number another wa_id
    ("read", {"phone": None, "wa_id": PHONE[1:], "user_id": "US.1349120865530274"}),
], ids=["read", "delivered", "failed", "sent-other-wa-id", "read-with-bsuid"])
async def test_a_status_of_a_message_the_platform_never_sent_changes_no_contact(kind, recipient):
    """A number shared with an agent app: Meta reports the app's messages too, without our key."""
    store = FakeStore()
    handle, registry = _handler(store)
    await handle([Item(None, record(e)) for e in (
        event("contact.created", external_id="cust-1", phone=PHONE, name="Anna", at=T0),
        inbound(external_id="cust-1", at=T0),
    )])
    before = (store.contacts[("shop", "cust-1")], dict(store.aliases))
    await handle([Item(None, record(event("message.status", external_id=None, at=T0 + H, message_id="wamid.agent",
                                          status=kind, **recipient)))])
    row = store.contacts[("shop", "cust-1")]
    assert (row, store.aliases) == before
    assert row.features.last_read_at is None and "read_no_reply" not in row.tags
    assert registry.get_sample_value("scrm_segmenter_events_skipped_total",
                                     {"type": "message.status", "reason": "not_platform"}) == 1


@pytest.mark.parametrize(("idempotency_key", "tagged"), [("shop:welcome:cust-1", True), (None, False)],
                         ids=["ours", "foreign"])
def test_a_read_receipt_counts_only_with_the_sends_key(idempotency_key, tagged):
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=PHONE))
    key = roster.record("shop", read(external_id=None, at=T0 + H, idempotency_key=idempotency_key))
    assert key == ("cust-1" if tagged else None)
    features = roster.contacts[("shop", "cust-1")]
    assert (features.last_read_at == T0 + H) is tagged
    assert ("read_no_reply" in tags(features, T0 + 2 * H, POLICY, EUR)) is tagged


def test_a_status_applies_to_the_contact_that_exists():
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=PHONE))
    assert roster.record("shop", webhook("read", PHONE[1:], at=T0 + H, message_id="w", status="read")) == "cust-1"
    assert roster.contacts[("shop", "cust-1")].last_read_at == T0 + H


def test_account_and_template_events_are_not_read_and_change_no_features():
    assert {"account.updated", "template.updated"} <= EVENTS_IGNORED
    ev = event("template.updated", no_contact=True, field="message_template_status_update", event="APPROVED")
    features = ContactFeatures(name="Anna")
    assert evolve(features, ev) is features
    assert Roster({}, {}).record("shop", ev) is None


def test_every_contract_event_type_is_either_read_or_deliberately_ignored():
    assert EVENTS_READ.isdisjoint(EVENTS_IGNORED)
    assert EVENTS_READ | EVENTS_IGNORED == set(EVENT_TYPES)
    assert APPLY_ONLY <= EVENTS_READ


# --- a number change moves the person; the old number stays an alias ------------------------------------

OLD_WA, NEW_WA = "4915112345678", "4915198765432"


def _moved_roster() -> Roster:
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone="+" + OLD_WA, name="Anna"))
    roster.record("shop", event("contact.number_changed", external_id=None, phone=None, wa_id=OLD_WA,
                                old_wa_id=OLD_WA, new_wa_id=NEW_WA, at=T0 + H))
    return roster


def test_a_number_change_moves_the_person_to_the_new_number():
    roster = _moved_roster()
    key, person = _only(roster)
    assert (key, person.phone, person.wa_id) == ("cust-1", "+" + NEW_WA, NEW_WA)
    assert roster.record("shop", webhook("inbound", NEW_WA, at=T0 + 2 * H)) == "cust-1"
    assert roster.record("shop", webhook("inbound", OLD_WA, at=T0 + 3 * H)) == "cust-1"  # a late webhook
    assert roster.contacts[("shop", "cust-1")].inbound_messages == 2
    assert roster.owner("shop", f"phone:+{OLD_WA}") == "cust-1"


def test_the_old_number_given_to_another_customer_by_the_shop_is_handed_over():
    roster = _moved_roster()
    assert roster.record("shop", event("contact.created", external_id="cust-2", phone="+" + OLD_WA)) == "cust-2"
    assert len(roster.contacts) == 2
    assert roster.owner("shop", f"phone:+{OLD_WA}") == "cust-2"
    assert roster.owner("shop", f"match:{OLD_WA}") == "cust-2"
    assert roster.contacts[("shop", "cust-1")].phone == "+" + NEW_WA


@pytest.mark.parametrize(("old_phone", "old_wa", "webhook_wa"), [
    ("+" + OLD_WA, OLD_WA, OLD_WA),
    (MX_PHONE, MX_WA, MX_WA),  # WhatsApp's 521 form of the handed-over Mexican number
])
def test_the_new_holder_of_a_handed_over_number_is_never_joined_with_the_former(old_phone, old_wa, webhook_wa):
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=old_phone, wa_id=old_wa, name="Anna"))
    roster.record("shop", paid("o-1", 50.0, external_id="cust-1", phone=None))
    roster.record("shop", event("contact.number_changed", external_id=None, phone=None, wa_id=old_wa,
                                old_wa_id=old_wa, new_wa_id=NEW_WA, at=T0 + H))
    roster.record("shop", event("contact.created", external_id="cust-2", phone=old_phone, name="Carl", at=T0 + 2 * H))
    # Carl writes from the number: his webhook names the number in WhatsApp's form.
    assert roster.record("shop", webhook("inbound", webhook_wa, at=T0 + 3 * H)) == "cust-2"
    assert roster.merged == []
    anna, carl = roster.contacts[("shop", "cust-1")], roster.contacts[("shop", "cust-2")]
    assert (anna.name, anna.orders, anna.inbound_messages) == ("Anna", 1, 0)
    assert (carl.name, carl.orders, carl.inbound_messages) == ("Carl", 0, 1)


def test_a_number_change_to_a_number_already_known_joins_that_contact():
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone="+" + OLD_WA))
    roster.record("shop", webhook("inbound", NEW_WA, at=T0))  # the new number wrote first
    roster.record("shop", event("contact.number_changed", external_id=None, phone=None, wa_id=OLD_WA,
                                old_wa_id=OLD_WA, new_wa_id=NEW_WA, at=T0 + H))
    key, person = _only(roster)
    assert (key, person.inbound_messages, person.wa_id) == ("cust-1", 1, NEW_WA)


def test_a_number_change_to_a_number_the_phone_library_rejects_keeps_it_as_given():
    roster = Roster({}, {})
    roster.record("shop", event("contact.created", external_id="cust-1", phone=MX_PHONE))
    roster.record("shop", event("contact.number_changed", external_id=None, phone=MX_PHONE, old_wa_id=MX_WA,
                                new_wa_id="5215587654321", at=T0 + H))
    _, person = _only(roster)
    assert (person.phone, person.wa_id) == ("+5215587654321", "5215587654321")
    assert roster.record("shop", webhook("inbound", "5215587654321")) == "cust-1"


# --- the shop's name is not the WhatsApp profile name ---------------------------------------------------

@pytest.mark.parametrize(("events", "shown", "profile"), [
    ([("shop", "Anna Schmidt"), ("whatsapp", "🦄 Lucky")], "Anna Schmidt", "🦄 Lucky"),
    ([("whatsapp", "🦄 Lucky"), ("shop", "Anna Schmidt")], "Anna Schmidt", "🦄 Lucky"),
    ([("whatsapp", "🦄 Lucky")], "🦄 Lucky", "🦄 Lucky"),
    ([("shop", "Anna Schmidt")], "Anna Schmidt", None),
    ([("whatsapp", "Lucky"), ("whatsapp", "Lucky Star")], "Lucky Star", "Lucky Star"),
])
def test_the_shops_name_wins_and_the_profile_name_is_kept_apart(events, shown, profile):
    roster = Roster({}, {})
    for i, (source, name) in enumerate(events):
        at = T0 + i * H
        if source == "shop":
            roster.record("shop", event("contact.updated", external_id="cust-1", phone=PHONE, name=name, at=at))
        else:
            roster.record("shop", webhook("inbound", PHONE[1:], at=at, profile_name=name))
    _, person = _only(roster)
    assert (person.display_name, person.profile_name) == (shown, profile)


# --- replies of any type --------------------------------------------------------------------------------

@pytest.mark.parametrize(("type_", "text"), [
    ("image", "Ist der Sneaker noch in 42 da?"), ("image", None), ("video", None), ("audio", None),
    ("voice", None), ("document", "Rechnung.pdf"), ("sticker", None), ("reaction", "👍"), ("reaction", None),
    ("location", "Alexanderplatz"), ("contacts", None), ("order", None), ("button", "Stornieren"),
    ("interactive", "Express"), ("unsupported", None), ("text", "Danke!"),
])
def test_a_reply_of_any_type_is_a_reply_for_the_activity_tier_and_read_no_reply(type_, text):
    features = ContactFeatures()
    for ev in (paid("o1", 50.0, at=T0), read(at=T0 + H), inbound(type_=type_, text=text, at=T0 + 2 * H)):
        features = evolve(features, ev)
    now = T0 + 3 * H
    assert activity_tier(features, now, POLICY).value == "high"
    assert "read_no_reply" not in tags(features, now, POLICY, EUR)
    assert features.inbound_messages == 1


def test_read_without_any_reply_is_still_tagged():
    features = evolve(evolve(ContactFeatures(), paid("o1", 50.0, at=T0)), read(at=T0 + H))
    assert "read_no_reply" in tags(features, T0 + 2 * H, POLICY, EUR)


# --- finding a contact by any alias ---------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "expected"), [
    ("cust-1", ["ext:cust-1", "user:cust-1"]),
    ("+525512345678", ["ext:+525512345678", "phone:+525512345678", "wa:525512345678", "user:+525512345678",
                       "match:525512345678"]),
    ("5215512345678", ["ext:5215512345678", "wa:5215512345678", "user:5215512345678", "match:525512345678"]),
    ("+52 55 1234 5678", ["ext:+52 55 1234 5678", "phone:+525512345678", "wa:525512345678",
                          "user:+52 55 1234 5678", "match:525512345678"]),
    ("US.13491208655302741918", ["ext:US.13491208655302741918", "user:US.13491208655302741918"]),
])
def test_lookup_aliases_of_a_reference(ref, expected):
    assert lookup_aliases(ref) == expected
