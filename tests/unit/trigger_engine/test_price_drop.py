"""R-T6.2 price drop: more than 5 % off an item in an open cart → a message, at most 2 per item per 7 days."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrm_common.contracts.events import CartUpdated, PaymentSucceeded, ProductPriceChanged, parse_event
from trigger_engine.domain.decide import decide, decide_without_contact, evolve, on_timer
from trigger_engine.domain.decisions import Decision, FanOut, Remember, Send, Suppress, Withdraw
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.price_drop import (
    SLOT,
    WAITING_SLOT,
    PriceDropSettings,
    decide_price_change,
    is_drop,
    key_prefix,
    price_drop_on_timer,
    withdraw_for_closed_carts,
)
from trigger_engine.domain.timers import Timer

from .factories import PHONE, T0, TENANT, config, payment, profile

SKU = "SKU-42"
CHECKOUT = "https://shop.example/checkout/c-1"
_n = iter(range(1, 10**9))


def price_changed(old: float, new: float, *, sku: str = SKU, at: datetime = T0) -> ProductPriceChanged:
    event = parse_event({"event_id": f"pc{next(_n)}", "type": "product.price_changed", "occurred_at": at.isoformat(),
                         "data": {"sku": sku, "old_price": old, "new_price": new}})
    assert isinstance(event, ProductPriceChanged)
    return event


def cart_updated(*, cart_id: str = "c-1", sku: str = SKU, price: float = 100.0, currency: str = "EUR",
                 checkout_url: str | None = CHECKOUT, at: datetime = T0 - timedelta(hours=1),
                 contact_key: str = "cust-1", name: str = "Kinderwagen Deluxe") -> CartUpdated:
    data: dict[str, Any] = {"cart_id": cart_id, "total": price, "currency": currency,
                            "items": [{"sku": sku, "name": name, "price": price, "quantity": 1}] if sku else []}
    if checkout_url:
        data["checkout_url"] = checkout_url
    event = parse_event({"event_id": f"cu{next(_n)}", "type": "cart.updated", "occurred_at": at.isoformat(),
                         "contact": {"external_id": contact_key, "phone": PHONE}, "data": data})
    assert isinstance(event, CartUpdated)
    return event


def shopper(contact_key: str = "cust-1", **fields: Any) -> ContactProfile:
    """A person with SKU in an open cart."""
    return evolve(profile(contact_key, **fields), cart_updated(contact_key=contact_key))


def timer(person: str = "cust-1", *, event_id: str = "pc-1", at: datetime = T0, old: float = 100.0,
          new: float = 90.0, sku: str = SKU) -> Timer:
    return Timer(TENANT, key_prefix(TENANT, event_id) + person, "price_drop", person, at, event_id,
                 at + timedelta(hours=24), {"sku": sku, "old_price": old, "new_price": new, "event_id": event_id})


def fire(p: ContactProfile, t: Timer, now: datetime | None = None, cfg: EngineConfig | None = None
         ) -> tuple[Decision, ...]:
    """The decisions of a price-drop timer, without the memory of messages that may still wait (tested apart)."""
    return tuple(d for d in fire_all(p, t, now, cfg) if not (isinstance(d, Remember) and d.slot == WAITING_SLOT))


def fire_all(p: ContactProfile, t: Timer, now: datetime | None = None, cfg: EngineConfig | None = None
             ) -> tuple[Decision, ...]:
    return on_timer(p, t, now or t.due_at + timedelta(seconds=1), cfg or config())


def remembered(p: ContactProfile, decisions: tuple[Decision, ...]) -> ContactProfile:
    """`p` after the handler wrote the decisions' Remembers."""
    for d in decisions:
        if isinstance(d, Remember):
            slot = dict(p.slot(d.slot))
            slot[d.key] = d.value
            if d.value is None:
                del slot[d.key]
            p = p.with_slot(d.slot, slot)
    return p


@pytest.mark.parametrize(("old", "new", "drop"), [
    (100.0, 95.0, False),  # exactly 5 %: not "more than 5 %"
    (100.0, 94.99, True),
    (100.0, 90.0, True),  # the acceptance's 10 %
    (20.0, 19.0, False),  # exactly 5 % of a small price
    (19.99, 18.99, True),  # 5.003 %
    (100.0, 96.0, False),
    (100.0, 100.0, False),
    (100.0, 120.0, False),  # a rise
    (0.0, 0.0, False),
    (10.0, 0.0, True),  # free now
])
def test_only_a_drop_of_more_than_five_percent_counts(old, new, drop):
    assert is_drop(old, new, 5.0) is drop
    decisions = decide_without_contact(price_changed(old, new), T0, config())
    assert (len(decisions) == 1) is drop


def test_a_drop_fans_out_one_timer_per_person_due_at_once():
    event = price_changed(100.0, 90.0)
    (fan,) = decide_without_contact(event, T0 + timedelta(seconds=2), config())
    assert isinstance(fan, FanOut)
    assert fan.flow == "price_drop" and fan.sku == SKU
    assert fan.key_prefix == f"{TENANT}|price_drop|{event.event_id}|"
    assert fan.due_at == event.occurred_at
    assert fan.expires_at == event.occurred_at + timedelta(hours=24)
    assert fan.payload == {"sku": SKU, "old_price": 100.0, "new_price": 90.0, "event_id": event.event_id}
    assert fan.reason.startswith("R-T6.2: ") and "10.0 %" in fan.reason


def test_the_threshold_is_a_setting():
    cfg = config(price_drop={"min_drop_percent": 15.0})
    assert decide_price_change(price_changed(100.0, 90.0), T0, cfg) == ()
    assert decide_price_change(price_changed(100.0, 84.0), T0, cfg) != ()


@pytest.mark.parametrize(("changes", "now", "reason"), [
    ({"enabled": False}, T0, "flow disabled"),
    ({}, T0 + timedelta(hours=24), "expired: "),
])
def test_a_drop_nobody_will_hear_of_says_why(changes, now, reason):
    (decision,) = decide_price_change(price_changed(100.0, 80.0), now, config(price_drop=changes))
    assert isinstance(decision, Suppress)
    assert decision.reason.startswith(reason)
    assert decision.contact_key == f"sku:{SKU}"


def test_the_person_gets_the_price_drop_with_prices_in_the_carts_currency_and_a_resume_link():
    p = shopper(locale="de-DE")
    t = timer()
    send, memory = fire(p, t)
    assert isinstance(send, Send)
    assert (send.flow, send.category, send.template, send.language) == ("price_drop", "marketing", "price_drop", "de")
    assert send.idempotency_key == t.key
    name, new, old, link = send.parameters
    assert (name, new, old) == ("Kinderwagen Deluxe", "90,00 €", "100,00 €")
    (short,) = send.links
    assert short.kind == "resume" and short.flow == "price_drop" and short.content == "price_drop"
    assert link.endswith("/l/" + short.code)
    assert send.policy is not None  # marketing: the gate's quiet hours and caps apply
    assert send.expires_at == t.expires_at
    assert isinstance(memory, Remember)
    assert (memory.slot, memory.key, memory.contact_key) == (SLOT, SKU, "cust-1")
    assert memory.value == [(t.due_at + timedelta(seconds=1)).isoformat()]


def test_a_cart_without_checkout_url_gets_a_tracked_link_to_the_fallback():
    p = evolve(profile(), cart_updated(checkout_url=None))
    send, _ = fire(p, timer())
    assert isinstance(send, Send)
    (short,) = send.links
    assert short.kind == "tracked" and short.target == "https://shop.example/cart"


def test_the_price_is_written_in_the_currency_of_the_cart_holding_it():
    p = evolve(profile(), cart_updated(currency="JPY", price=12800.0))
    send, _ = fire(p, timer(old=12800.0, new=9800.0))
    assert isinstance(send, Send)
    assert send.parameters[1:3] == ("¥9,800", "¥12,800")


def test_no_open_cart_holds_the_item_any_more():
    bought = evolve(shopper(), payment(at=T0 - timedelta(minutes=5)).model_copy(
        update={"data": payment().data.model_copy(update={"cart_id": "c-1"})}))
    assert isinstance(bought, ContactProfile)
    (decision,) = fire(bought, timer())
    assert isinstance(decision, Suppress)
    assert decision.reason == f"no open cart holds {SKU} any more"
    other_item = evolve(profile(), cart_updated(sku="SKU-OTHER"))
    (decision,) = fire(other_item, timer())
    assert isinstance(decision, Suppress) and decision.reason == f"no open cart holds {SKU} any more"


def test_payment_without_cart_id_closes_the_cart_too():
    p = evolve(shopper(), payment(at=T0 - timedelta(minutes=1)))
    assert isinstance(payment(), PaymentSucceeded)
    (decision,) = fire(p, timer())
    assert isinstance(decision, Suppress) and "no open cart" in decision.reason


@pytest.mark.parametrize(("days_ago", "decided"), [
    ((), "send"),
    ((1,), "send"),
    ((1, 2), "suppress"),  # the third within 7 days
    ((6.9, 0.1), "suppress"),
    ((7, 3), "send"),  # exactly 7 days ago is outside the window
    ((8, 9, 10), "send"),
    ((3, 8, 9), "send"),
    ((-1, 2), "suppress"),  # a send after `now` (a timer firing out of order) counts too
    ((20, 15), "send"),
])
def test_at_most_two_price_drops_per_item_per_seven_days(days_ago, decided):
    now = T0 + timedelta(seconds=1)
    p = shopper()
    p = p.with_slot(SLOT, {SKU: [(now - timedelta(days=d)).isoformat() for d in days_ago]})
    decisions = fire(p, timer(), now)
    if decided == "send":
        assert isinstance(decisions[0], Send)
        (memory,) = [d for d in decisions if isinstance(d, Remember)]
        kept = [now - timedelta(days=d) for d in days_ago if d < 14]  # twice the window is remembered
        assert memory.value == [t.isoformat() for t in sorted([*kept, now])]
    else:
        (suppress,) = decisions
        assert isinstance(suppress, Suppress)
        assert suppress.reason == f"R-T6.2: 2 price-drop messages for SKU {SKU} in the last 7 days"


def test_the_limit_is_per_item():
    now = T0 + timedelta(seconds=1)
    p = shopper().with_slot(SLOT, {"SKU-OTHER": [(now - timedelta(days=1)).isoformat()] * 2})
    assert isinstance(fire(p, timer(), now)[0], Send)


def test_acceptance_three_carts_three_messages_then_a_third_drop_within_seven_days_is_suppressed():
    people = {key: shopper(key) for key in ("ann", "bob", "cem")}
    told: dict[str, int] = dict.fromkeys(people, 0)
    for drop, at in enumerate((T0, T0 + timedelta(days=2), T0 + timedelta(days=4))):
        for key in people:
            decisions = fire(people[key], timer(key, event_id=f"drop-{drop}", at=at))
            people[key] = remembered(people[key], decisions)
            told[key] += sum(isinstance(d, Send) for d in decisions)
            if drop == 2:
                (suppress,) = decisions
                assert isinstance(suppress, Suppress) and suppress.reason.startswith("R-T6.2: ")
        if drop == 0:
            assert told == {"ann": 1, "bob": 1, "cem": 1}
    assert told == {"ann": 2, "bob": 2, "cem": 2}


@pytest.mark.parametrize(("fields", "changes", "reason"), [
    ({"opted_in": False}, {}, "contact has not opted in to marketing"),
    ({"marketing": "stop"}, {}, "customer stopped marketing messages"),
    ({"phone": None}, {}, "no phone number known for contact"),
    ({}, {"enabled": False}, "flow disabled"),
    ({"locale": "fr-FR"}, {"templates": {"de": "price_drop"}}, "no price_drop template for language en_US"),
])
def test_a_person_who_may_not_hear_of_it_is_suppressed_with_the_reason(fields, changes, reason):
    p = shopper(**{k: v for k, v in fields.items() if k != "phone"})
    if "phone" in fields:
        p = replace(p, phone=None)
    (decision,) = fire(p, timer(), cfg=config(price_drop=changes))
    assert isinstance(decision, Suppress)
    assert decision.reason == reason


def test_an_expired_timer_is_suppressed_as_expired():
    t = timer()
    (decision,) = price_drop_on_timer(shopper(), t, t.expires_at or T0, config())
    assert isinstance(decision, Suppress) and decision.outcome == "expired"


def test_a_send_no_account_carries_is_not_remembered():
    decisions = fire(shopper(), timer(), cfg=config(accounts=()))
    assert [type(d) for d in decisions] == [Suppress]
    assert "no WhatsApp account" in decisions[0].reason


def test_settings_defaults_are_the_specs():
    s = PriceDropSettings()
    assert (s.min_drop_percent, s.max_per_item, s.window_days) == (5.0, 2, 7)
    assert s.templates == {"en_US": "price_drop", "de": "price_drop"}


SKEW_MINUTES = 24 * 60  # a timer fires at most its expiry (24 h) late; an engine's clock is not weeks off


@settings(max_examples=300, deadline=None)
@given(firings=st.lists(st.tuples(st.integers(min_value=0, max_value=28 * 24 * 60),
                                  st.integers(min_value=-SKEW_MINUTES, max_value=SKEW_MINUTES)),
                        min_size=1, max_size=25))
def test_never_three_price_drop_messages_for_one_item_within_any_seven_days(firings):
    """Property (R-T6.2): for any sequence of price-drop timers of one SKU and person at random times over four
    weeks, each seen at a time up to a day off the clock (so out of order), applying each Remember, no 7-day
    window holds 3 Sends."""
    moments = [T0 + timedelta(minutes=clock + skew) for clock, skew in sorted(firings)]
    p = shopper()
    sent: list[datetime] = []
    for i, at in enumerate(moments):
        decisions = price_drop_on_timer(p, timer(event_id=f"e{i}", at=at), at, config())
        p = remembered(p, decisions)
        sent += [at for d in decisions if isinstance(d, Send)]
    sent.sort()
    for first, third in zip(sent, sent[2:], strict=False):
        assert third - first >= timedelta(days=7)


# --- a price-drop message still waiting is withdrawn when no open cart holds the item any more ---------------


def _waiting_after_a_send() -> tuple[ContactProfile, str]:
    p = shopper()
    decisions = fire_all(p, timer())
    [send] = [d for d in decisions if isinstance(d, Send)]
    [waits] = [d for d in decisions if isinstance(d, Remember) and d.slot == WAITING_SLOT]
    assert waits.value == [[send.idempotency_key, send.expires_at.isoformat()]]  # type: ignore[union-attr]
    return remembered(p, decisions), send.idempotency_key


def _paid_cart() -> PaymentSucceeded:
    event = payment(at=T0 + timedelta(minutes=30))
    return event.model_copy(update={"data": event.data.model_copy(update={"cart_id": "c-1"})})


def test_a_purchase_withdraws_a_price_drop_message_that_may_still_wait() -> None:
    p, key = _waiting_after_a_send()
    event = _paid_cart()
    after = evolve(p, event)
    out = decide(after, event, T0 + timedelta(hours=1), config())
    withdrawn = [d for d in out if isinstance(d, Withdraw) and d.flow == "price_drop"]
    assert [(w.idempotency_key, w.reason) for w in withdrawn] == [(key, "cancelled: purchased")]
    assert Remember("price_drop", after.contact_key, WAITING_SLOT, SKU, None) in out


def test_a_message_past_its_expiry_is_not_withdrawn_and_a_cart_still_holding_the_item_keeps_it() -> None:
    p, _ = _waiting_after_a_send()
    event = _paid_cart()
    assert [d for d in decide(evolve(p, event), event, T0 + timedelta(days=2), config())
            if isinstance(d, Withdraw) and d.flow == "price_drop"] == []
    unrelated = withdraw_for_closed_carts(p, _paid_cart(), T0, config())  # the cart is still open in `p`
    assert unrelated == ()
