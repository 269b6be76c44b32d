"""The person's stated preferences (issue 8, R-G4, R-S5): kept on the profile from the shop's contact events,
merged like the other facts, stamped on every Send and carried by the SendMessage to the send gate — also when
the shop's contact events name no phone (the sender's record of the number cannot have them then)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from scrm_common.contracts.commands import SendMessage
from scrm_common.contracts.events import Event, Preferences, parse_event
from trigger_engine.domain.decide import absorb, decide, evolve
from trigger_engine.domain.decisions import Send
from trigger_engine.domain.model import ContactProfile
from trigger_engine.handlers import Cause, _send_command

from .factories import PHONE, T0, config, contact_created, inbound, payment, profile

SECOND = timedelta(seconds=1)
_ids = itertools.count(1)


def contact_event(kind: str = "contact.updated", *, at: datetime = T0, phone: str | None = None,
                  **data: Any) -> Event:
    """A shop's contact event naming the external id `cust-1` (and `phone` when given) with `data` as is."""
    contact: dict[str, Any] = {"external_id": "cust-1"}
    if phone is not None:
        contact["phone"] = phone
    return parse_event({"event_id": f"pref-{next(_ids)}", "type": kind, "occurred_at": at.isoformat(),
                        "contact": contact, "data": data})


def after(*events: Event, start: ContactProfile | None = None) -> ContactProfile:
    person = start or ContactProfile("cust-1")
    for event in events:
        person = evolve(person, event)
    return person


# --- evolve: what the profile keeps ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["contact.created", "contact.updated"])
def test_a_contact_event_stating_preferences_keeps_exactly_what_it_stated(kind: str) -> None:
    person = after(contact_event(kind, preferences={"max_promotions_per_week": 1, "tier": "gold"}))
    assert person.preferences == {"max_promotions_per_week": 1, "tier": "gold"}


def test_an_event_without_preferences_keeps_the_stated_ones() -> None:
    stated = contact_event(preferences={"passive": True})
    person = after(stated, contact_event(opted_in=True), contact_created(), payment(),
                   inbound(wa_id=PHONE[1:], text="hallo"))
    assert person.preferences == {"passive": True}


def test_new_preferences_replace_the_old_ones_whole() -> None:
    person = after(contact_event(preferences={"max_promotions_per_week": 1, "tier": "gold"}),
                   contact_event(preferences={"max_promotions_per_month": 4}))
    assert person.preferences == {"max_promotions_per_month": 4}, "the last statement is the person's whole say"


def test_an_empty_preferences_object_clears_them() -> None:
    person = after(contact_event(preferences={"passive": True}), contact_event(preferences={}))
    assert person.preferences == {}


def test_a_person_who_never_stated_preferences_has_none() -> None:
    assert after(contact_event(opted_in=True), contact_created()).preferences is None


def test_preferred_hours_are_kept_as_the_event_wrote_them() -> None:
    person = after(contact_event(preferences={"preferred_hours": "18:00-21:00", "passive": False}))
    assert person.preferences == {"preferred_hours": "18:00-21:00", "passive": False}


def test_the_kept_preferences_cannot_be_changed_in_place() -> None:
    person = after(contact_event(preferences={"passive": True}))
    with pytest.raises(TypeError):
        person.preferences["passive"] = False  # type: ignore[index]


# --- absorb: one person all along ------------------------------------------------------------------------


@pytest.mark.parametrize(("own", "other", "merged"), [
    ({"max_promotions_per_week": 1}, {"max_promotions_per_week": 5, "passive": True},
     {"max_promotions_per_week": 1, "passive": True}),
    ({"max_promotions_per_week": None, "tier": "gold"}, {"max_promotions_per_week": 2, "tier": "silver"},
     {"max_promotions_per_week": 2, "tier": "gold"}),
    (None, {"passive": True}, {"passive": True}),
    ({"passive": False}, None, {"passive": False}),
    (None, None, None),
])
def test_a_merge_keeps_the_persons_own_preferences_and_fills_gaps_from_the_other(
        own: dict[str, Any] | None, other: dict[str, Any] | None, merged: dict[str, Any] | None) -> None:
    person = absorb(ContactProfile("cust-1", preferences=own), ContactProfile("guest-2", preferences=other))
    assert person.preferences == merged


# --- decide: every Send carries them ---------------------------------------------------------------------


def sends(person: ContactProfile) -> list[Send]:
    cfg = config()
    decided = [*decide(person, contact_created(at=T0), T0 + SECOND, cfg),
               *decide(person, payment(at=T0), T0 + SECOND, cfg)]
    found = [d for d in decided if isinstance(d, Send)]
    assert {s.flow for s in found} == {"welcome", "order_confirmation"}, decided
    return found


@pytest.mark.parametrize("stated", [{"max_promotions_per_week": 1, "tier": "gold"}, None])
def test_every_send_carries_the_persons_stated_preferences(stated: dict[str, Any] | None) -> None:
    for send in sends(profile(preferences=stated)):
        assert send.preferences == (stated if send.category == "marketing" else None), send.flow


def test_preferences_stated_on_an_event_naming_no_phone_reach_a_later_send() -> None:
    person = after(contact_event("contact.created", preferences={"max_promotions_per_week": 0}),
                   payment(external_id="cust-1", phone=PHONE))
    assert person.phone == PHONE
    (confirmation,) = decide(person, payment(at=T0), T0 + SECOND, config())
    assert isinstance(confirmation, Send) and confirmation.preferences is None  # utility: not the gate's business
    not_yet_bought = dataclasses.replace(person, first_purchase_at=None, first_purchase_event=None)
    (welcome,) = decide(not_yet_bought, contact_created(at=T0), T0 + SECOND, config())
    assert isinstance(welcome, Send) and welcome.preferences == {"max_promotions_per_week": 0}


# --- the command: the contract's Preferences ---------------------------------------------------------------


def command_of(send: Send) -> dict[str, Any]:
    row = _send_command(Cause("acme", "e-1", "payment.succeeded", T0), send, T0 + SECOND)
    body: dict[str, Any] = json.loads(row.value)
    SendMessage.model_validate_json(row.value)  # the sender reads it back
    return body


def a_send(preferences: dict[str, Any] | None) -> Send:
    return Send("welcome", "acme|welcome|cust-1", "marketing", "cust-1", PHONE, "welcome", "de", ("10",),
                "acct-1", preferences=preferences)


def test_the_send_command_carries_the_stated_preferences_as_the_contracts_model() -> None:
    body = command_of(a_send({"max_promotions_per_week": 1, "preferred_hours": "18:00-21:00", "tier": "gold"}))
    assert body["preferences"] == {"max_promotions_per_week": 1, "preferred_hours": "18:00-21:00", "tier": "gold"}
    assert Preferences.model_validate(body["preferences"]).max_promotions_per_week == 1


@pytest.mark.parametrize("stated", [None, {}])
def test_a_send_without_stated_preferences_names_none(stated: dict[str, Any] | None) -> None:
    assert "preferences" not in command_of(a_send(stated))


def test_a_stored_value_the_contract_refuses_leaves_out_only_that_key() -> None:
    body = command_of(a_send({"max_promotions_per_week": 999, "passive": True}))
    assert body["preferences"] == {"passive": True}
