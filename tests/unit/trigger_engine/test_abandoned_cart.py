"""R-T6 abandoned cart: stage timing from the SPEC's numbers, cancellation by purchase or emptying, the stage
re-checked when its timer fires, stage content (items, total, stock hint, resume and specialist links, category
finals), and properties over any sequence of cart events, payments and timer firings."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scrm_common.contracts.events import CartUpdated, Event, PaymentSucceeded, parse_event
from scrm_common.links import MAX_LINK_CHARS
from trigger_engine.domain import abandoned_cart as ac
from trigger_engine.domain.abandoned_cart import (
    AbandonedCartSettings,
    cart_prefix,
    stage_due,
    stage_expires,
    stage_key,
)
from trigger_engine.domain.decide import decide, evolve, on_timer
from trigger_engine.domain.decisions import Cancel, Decision, Remember, Schedule, Send, Suppress, Withdraw
from trigger_engine.domain.model import ContactProfile, EngineConfig, LinkKeys
from trigger_engine.domain.timers import Timer

from .factories import PHONE, T0, TENANT, config, payment, profile

_ids = itertools.count(1)
BASE = "https://wa.shop.de"
CHECKOUT = "https://shop.example/checkout/c-1"


def cfg(**changes: Any) -> EngineConfig:
    base = config(abandoned_cart=changes) if changes else config()
    return replace(base, links=LinkKeys(secret="s3cret", base_url=BASE, code_chars=8))


def line(name: str, price: float, quantity: int = 1, *, category: str | None = None, stock: int | None = None,
         sku: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"sku": sku or f"sku-{name}", "name": name, "price": price, "quantity": quantity}
    if category is not None:
        out["category"] = category
    if stock is not None:
        out["stock"] = stock
    return out


def cart_event(items: list[dict[str, Any]], *, cart_id: str = "c-1", at: datetime = T0,
               checkout_url: str | None = CHECKOUT, currency: str = "EUR", total: float | None = None,
               external_id: str = "cust-1") -> CartUpdated:
    data: dict[str, Any] = {"cart_id": cart_id, "items": items, "currency": currency,
                            "total": total if total is not None else round(sum(i["price"] * i["quantity"]
                                                                               for i in items), 2)}
    if checkout_url is not None:
        data["checkout_url"] = checkout_url
    event = parse_event({"event_id": f"ce{next(_ids)}", "type": "cart.updated", "occurred_at": at.isoformat(),
                         "contact": {"external_id": external_id, "phone": PHONE}, "data": data})
    assert isinstance(event, CartUpdated)
    return event


def paid(*, cart_id: str | None, at: datetime) -> PaymentSucceeded:
    event = payment(at=at, amount=50.0, tax=0.0, shipping=0.0)
    if cart_id is None:
        return event
    return event.model_copy(update={"data": event.data.model_copy(update={"cart_id": cart_id})})


def seen(p: ContactProfile, event: Event, c: EngineConfig, now: datetime | None = None
         ) -> tuple[ContactProfile, tuple[Decision, ...]]:
    after = evolve(p, event)
    return after, decide(after, event, now or event.occurred_at + timedelta(seconds=1), c)


def timer_of(s: Schedule) -> Timer:
    return Timer(TENANT, s.key, s.flow, s.contact_key, s.due_at, str(s.payload["event_id"]), s.expires_at,
                 dict(s.payload))


def remembered(p: ContactProfile, decisions: tuple[Decision, ...]) -> ContactProfile:
    """The profile after the writer applies the Remember decisions."""
    for d in decisions:
        if isinstance(d, Remember):
            slot = dict(p.slot(d.slot))
            if d.value is None:
                slot.pop(d.key, None)
            else:
                slot[d.key] = d.value
            p = p.with_slot(d.slot, slot)
    return p


def schedules(decisions: tuple[Decision, ...]) -> dict[int, Schedule]:
    return {int(d.payload["stage"]): d for d in decisions if isinstance(d, Schedule)}  # type: ignore[call-overload]


def fire(p: ContactProfile, s: Schedule, c: EngineConfig, now: datetime | None = None) -> tuple[Decision, ...]:
    return on_timer(p, timer_of(s), now or s.due_at, c)


# --- timing (R-T6.1) -------------------------------------------------------------------------------------------

BOUNDS = [(1, timedelta(minutes=25), timedelta(minutes=35)),
          (2, timedelta(hours=22), timedelta(hours=26)),
          (3, timedelta(hours=69), timedelta(hours=75))]


@pytest.mark.parametrize(("stage", "earliest", "latest"), BOUNDS)
def test_stage_due_within_the_spec_window_for_many_carts(stage, earliest, latest):
    s = AbandonedCartSettings()
    offsets = [stage_due(TENANT, f"cart-{i}", stage, T0, s) - T0 for i in range(2000)]
    assert all(earliest <= o <= latest for o in offsets)
    assert min(offsets) < earliest + (latest - earliest) / 10  # the jitter spreads over the window
    assert max(offsets) > latest - (latest - earliest) / 10
    assert all(o.microseconds == 0 for o in offsets)  # whole seconds


@pytest.mark.parametrize(("stage", "nominal", "jitter"), [(1, 30 * 60, 5 * 60), (2, 24 * 3600, 2 * 3600),
                                                          (3, 72 * 3600, 3 * 3600)])
def test_jitter_is_predictable_from_sha256(stage, nominal, jitter):
    digest = hashlib.sha256(f"{TENANT}|cart-42|{stage}".encode()).digest()
    expected = int.from_bytes(digest[:8], "big") % (2 * jitter + 1) - jitter
    due = stage_due(TENANT, "cart-42", stage, T0, AbandonedCartSettings())
    assert due == T0 + timedelta(seconds=nominal + expected)
    assert due == stage_due(TENANT, "cart-42", stage, T0, AbandonedCartSettings())


@pytest.mark.parametrize("cart_id", [f"c-{i}" for i in range(200)])
def test_each_stage_expires_when_the_next_may_first_be_due_and_the_last_after_its_window(cart_id: str):
    """Stage 1 expires 22 h (24 h − 2 h) after the cart, stage 2 at 69 h (72 h − 3 h): never sent next to the
    next stage whatever its jitter, and a cart abandoned 25 h ago has stage 1 expired (R-T6.1)."""
    s = AbandonedCartSettings()
    assert stage_expires(TENANT, cart_id, 1, T0, s) == T0 + timedelta(hours=22)
    assert stage_expires(TENANT, cart_id, 2, T0, s) == T0 + timedelta(hours=69)
    assert stage_expires(TENANT, cart_id, 3, T0, s) == stage_due(TENANT, cart_id, 3, T0, s) + timedelta(hours=12)
    for stage in (1, 2):
        assert stage_due(TENANT, cart_id, stage, T0, s) < stage_expires(TENANT, cart_id, stage, T0, s) <= \
            stage_due(TENANT, cart_id, stage + 1, T0, s)


def test_settings_refuse_overlapping_stage_windows():
    with pytest.raises(ValueError, match="before the next one"):
        AbandonedCartSettings(stage_1_minutes=60 * 23, stage_1_jitter_minutes=120)


def test_cart_with_items_schedules_three_stages_with_keys_and_payload():
    event = cart_event([line("Shoes", 59.0)])
    _, decisions = seen(profile(), event, cfg())
    by_stage = schedules(decisions)
    assert sorted(by_stage) == [1, 2, 3]
    s = AbandonedCartSettings()
    for n, sched in by_stage.items():
        assert sched.key == f"{TENANT}|abandoned_cart|c-1|{n}"
        assert sched.due_at == stage_due(TENANT, "c-1", n, T0, s)
        assert sched.expires_at == stage_expires(TENANT, "c-1", n, T0, s)
        assert sched.payload == {"cart_id": "c-1", "stage": n, "event_id": event.event_id}


def test_a_25_hour_old_cart_has_stage_1_expired_and_stage_2_due():
    s = AbandonedCartSettings()
    cart_id = next(f"c-{i}" for i in itertools.count() if stage_due(TENANT, f"c-{i}", 2, T0, s) < T0 + timedelta(hours=25))
    c = cfg()
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)], cart_id=cart_id), c, T0 + timedelta(hours=25))
    by_stage = schedules(decisions)
    now = T0 + timedelta(hours=25)
    assert timer_of(by_stage[1]).expired(now)  # the timer loop records it expired
    assert by_stage[2].due_at <= now and not timer_of(by_stage[2]).expired(now)
    (send, *_) = fire(p, by_stage[2], c, now)
    assert isinstance(send, Send) and send.template == "cart_reminder_2"
    expired = fire(p, by_stage[1], c, now)
    assert isinstance(expired[0], Suppress) and expired[0].outcome == "expired"


def test_later_cart_update_reschedules_from_its_own_time():
    c = cfg()
    p, _ = seen(profile(), cart_event([line("Shoes", 59.0)]), c)
    later = T0 + timedelta(minutes=20)
    _, decisions = seen(p, cart_event([line("Shoes", 59.0), line("Socks", 5.0)], at=later), c)
    by_stage = schedules(decisions)
    assert [by_stage[n].key for n in (1, 2, 3)] == [stage_key(TENANT, "c-1", n) for n in (1, 2, 3)]
    assert all(by_stage[n].due_at == stage_due(TENANT, "c-1", n, later, AbandonedCartSettings()) for n in (1, 2, 3))


def test_an_older_cart_event_arriving_late_schedules_nothing():
    c = cfg()
    p, _ = seen(profile(), cart_event([line("Shoes", 59.0)], at=T0 + timedelta(minutes=10)), c)
    _, decisions = seen(p, cart_event([line("Shoes", 59.0)], at=T0), c)
    assert decisions == ()


def test_after_stage_1_sent_a_cart_update_rearms_only_later_stages():
    c = cfg()
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)]), c)
    out = fire(p, schedules(decisions)[1], c)
    p = remembered(p, out)
    _, again = seen(p, cart_event([line("Shoes", 59.0)], at=T0 + timedelta(hours=1)), c)
    assert sorted(schedules(again)) == [2, 3]


# --- cancellation ---------------------------------------------------------------------------------------------

def _sent_stage_1(c: EngineConfig) -> ContactProfile:
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)]), c)
    return remembered(p, fire(p, schedules(decisions)[1], c))


@pytest.mark.parametrize("named", [True, False])
def test_purchase_cancels_pending_stages_and_withdraws_sent_ones(named):
    c = cfg()
    p = _sent_stage_1(c)
    _, decisions = seen(p, paid(cart_id="c-1" if named else None, at=T0 + timedelta(hours=1)), c)
    mine = [d for d in decisions if d.flow == "abandoned_cart"]
    assert mine == [Cancel("abandoned_cart", f"{TENANT}|abandoned_cart|c-1|", "cust-1", "cancelled: purchased",
                           prefix=True),
                    Withdraw("abandoned_cart", stage_key(TENANT, "c-1", 1), "cust-1", "cancelled: purchased",
                             "acct-1")]


def test_purchase_without_cart_id_leaves_a_cart_updated_after_it_alone():
    c = cfg()
    p, _ = seen(profile(), cart_event([line("Shoes", 59.0)], cart_id="old"), c)
    pay_at = T0 + timedelta(minutes=5)
    p, _ = seen(p, cart_event([line("Hat", 20.0)], cart_id="new", at=pay_at + timedelta(minutes=1)), c)
    _, decisions = seen(p, paid(cart_id=None, at=pay_at), c)
    cancels = [d for d in decisions if isinstance(d, Cancel)]
    assert [d.key for d in cancels] == [f"{TENANT}|abandoned_cart|old|"]


def test_emptied_cart_cancels_and_withdraws():
    c = cfg()
    p = _sent_stage_1(c)
    _, decisions = seen(p, cart_event([], at=T0 + timedelta(hours=2), total=0.0), c)
    assert decisions == (
        Cancel("abandoned_cart", f"{TENANT}|abandoned_cart|c-1|", "cust-1", "cancelled: cart emptied", prefix=True),
        Withdraw("abandoned_cart", stage_key(TENANT, "c-1", 1), "cust-1", "cancelled: cart emptied", "acct-1"))


def test_timer_firing_just_after_a_purchase_is_suppressed_in_its_transaction():
    c = cfg()
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)]), c)
    stage1 = schedules(decisions)[1]
    p = evolve(p, paid(cart_id="c-1", at=stage1.due_at - timedelta(milliseconds=3)))  # no Cancel applied yet
    assert fire(p, stage1, c) == (Suppress("abandoned_cart", "cancelled: purchased", "cust-1", stage1.key),)


@pytest.mark.parametrize(("change", "reason"), [
    ({"opted_in": False}, "contact has not opted in to marketing"),
    ({"marketing": "stop"}, "customer stopped marketing messages"),
    ({"phone": None}, "no phone number known for contact"),
])
def test_timer_rechecks_the_person(change, reason):
    c = cfg()
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)]), c)
    out = fire(replace(p, **change), schedules(decisions)[1], c)
    assert [(d.reason, d.outcome) for d in out if isinstance(d, Suppress)] == [(reason, "suppressed")]


def test_a_cart_without_checkout_url_gets_a_tracked_link_to_the_shops_cart_page():
    c = cfg()
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)], checkout_url=None), c)
    send = fire(p, schedules(decisions)[1], c)[0]
    assert isinstance(send, Send), send
    [link] = send.links
    assert (link.kind, link.target) == ("tracked", "https://shop.example/cart")
    assert send.parameters[3].endswith("/l/" + link.code)


def test_cancelling_a_cart_never_touches_another_cart_whose_id_starts_with_its_id():
    assert not stage_key(TENANT, "a|b", 1).startswith(cart_prefix(TENANT, "a"))
    assert stage_key(TENANT, "a|b", 1).startswith(cart_prefix(TENANT, "a|b"))


def test_timer_suppresses_disabled_flow_and_sent_stage():
    c = cfg()
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)]), c)
    off = cfg(enabled=False)
    assert fire(p, schedules(decisions)[1], off)[0].reason == "flow disabled"  # type: ignore[union-attr]
    p = remembered(p, fire(p, schedules(decisions)[1], c))
    assert fire(p, schedules(decisions)[1], c)[0].reason == "stage 1 already sent"  # type: ignore[union-attr]


# --- content --------------------------------------------------------------------------------------------------

def _send(items: list[dict[str, Any]], stage: int = 1, c: EngineConfig | None = None, locale: str | None = None,
          **event: Any) -> tuple[Send, tuple[Decision, ...]]:
    c = c or cfg()
    p, decisions = seen(profile(locale=locale), cart_event(items, **event), c)
    out = fire(p, schedules(decisions)[stage], c)
    assert isinstance(out[0], Send), out
    return out[0], out


def test_stage_1_send_is_marketing_with_five_nonempty_parameters_and_remembers_the_stage():
    send, out = _send([line("Shoes", 59.0)])
    assert send.category == "marketing" and send.template == "cart_reminder_1" and send.language == "en_US"
    assert send.idempotency_key == stage_key(TENANT, "c-1", 1)
    assert send.expires_at == stage_expires(TENANT, "c-1", 1, T0, AbandonedCartSettings())
    assert len(send.parameters) == 5 and all(p.strip() for p in send.parameters)
    assert send.parameters[0] == "Shoes – €59.00"
    assert send.parameters[1] == "€59.00"
    assert send.parameters[2] == "We saved your cart for you."
    assert send.parameters[4] == "Reply here if you have questions."
    assert Remember("abandoned_cart", "cust-1", "cart_stages", "c-1", [1]) in out
    assert [link.kind for link in send.links] == ["resume"]
    assert send.links[0].target.startswith(f"{BASE}/r/") and send.links[0].content == "stage_1"


def test_at_most_three_items_by_value_then_n_more_and_german_money():
    items = [line("A", 5.0), line("B", 50.0), line("C", 10.0, 3), line("D", 1.0), line("E", 20.0)]
    send, _ = _send(items, locale="de-DE")
    assert send.language == "de"
    assert send.parameters[0] == "B – 50,00 €, 3× C – 10,00 €, E – 20,00 € +2 weitere"
    assert send.parameters[1] == "106,00 €"


@pytest.mark.parametrize(("stock", "hint"), [(2, "Only 2 left of Shoes."), (5, "Only 5 left of Shoes."),
                                             (6, "We saved your cart for you."), (0, "We saved your cart for you."),
                                             (None, "We saved your cart for you.")])
def test_stock_hint_at_or_below_threshold(stock, hint):
    send, _ = _send([line("Shoes", 59.0, stock=stock), line("Hat", 9.0, stock=50)])
    assert send.parameters[2] == hint


@pytest.mark.parametrize(("total", "specialist"), [(199.99, False), (200.0, False), (200.01, True), (950.0, True)])
def test_specialist_link_above_200(total, specialist):
    send, _ = _send([line("TV", total)])
    assert (send.parameters[4].startswith("Questions? Talk to a specialist: ")) is specialist
    assert [link.kind for link in send.links] == (["resume", "tracked"] if specialist else ["resume"])
    if specialist:
        url = send.parameters[4].rsplit(" ", 1)[1]
        assert url.startswith(f"{BASE}/l/") and len(url) <= MAX_LINK_CHARS
        assert send.links[1].target == "https://shop.example/help" and send.links[1].content == "stage_1"


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_links_are_at_most_30_characters_with_the_public_base(stage):
    send, _ = _send([line("TV", 500.0)], stage)
    resume = send.parameters[3]
    assert resume.startswith(f"{BASE}/l/") and len(resume) <= MAX_LINK_CHARS
    assert send.links[0].content == f"stage_{stage}"
    assert len(send.parameters) == 5 and all(p.strip() for p in send.parameters)


def test_stage_2_offer_and_withdraws_stage_1():
    c = cfg()
    p, decisions = seen(profile(), cart_event([line("Shoes", 59.0)]), c)
    p = remembered(p, fire(p, schedules(decisions)[1], c))
    out = fire(p, schedules(decisions)[2], c)
    send = out[0]
    assert isinstance(send, Send) and send.template == "cart_reminder_2"
    assert send.parameters[2] == "Complete your order today and save 10% with code CART10."
    assert Withdraw("abandoned_cart", stage_key(TENANT, "c-1", 1), "cust-1", "superseded by stage 2", "acct-1") in out
    assert Remember("abandoned_cart", "cust-1", "cart_stages", "c-1", [1, 2]) in out


@pytest.mark.parametrize(("items", "template"), [
    ([line("Diapers", 30.0, 2, category="Baby"), line("Cable", 50.0, category="electronics")], "cart_final_baby"),
    ([line("Diapers", 30.0, category="BABY"), line("Phone", 400.0, category="Electronics")],
     "cart_final_electronics"),
    ([line("Shirt", 25.0, category="apparel")], "cart_final_apparel"),
    ([line("Cream", 25.0, category="Beauty")], "cart_final_beauty"),
    ([line("Lotion", 25.0, category="Baby Care")], "cart_final_baby"),
    ([line("Bone", 25.0, category="pets")], "cart_reminder_3"),
    ([line("Thing", 25.0)], "cart_reminder_3"),
])
def test_final_stage_template_by_dominant_category(items, template):
    send, _ = _send(items, 3)
    assert send.template == template
    assert send.parameters[2] == "Order now and get free shipping plus a little gift."


# --- properties -----------------------------------------------------------------------------------------------

Op = tuple[str, str, int]
ops = st.lists(st.tuples(st.sampled_from(["update", "update", "empty", "pay", "pay_any", "wait"]),
                         st.sampled_from(["a", "b"]), st.integers(min_value=1, max_value=60 * 80)),
               max_size=25)


def drive(sequence: list[Op]) -> tuple[dict[str, int], ContactProfile]:
    """Drive evolve + decide + on_timer (+ Remember, Schedule, Cancel as the writer applies them) through a
    sequence of cart updates, emptyings, payments and waits; timers fire in due order, expired ones are not.
    Asserts no stage Send after a purchase of its cart; returns stage Sends per cart and the final profile."""
    c = cfg()
    p = profile()
    clock = T0
    pending: dict[str, Schedule] = {}
    sends: dict[str, int] = {"a": 0, "b": 0}
    purchased: set[str] = set()

    def apply(decisions: tuple[Decision, ...], now: datetime) -> None:
        nonlocal p
        for d in decisions:
            if d.flow != "abandoned_cart":
                continue  # the order confirmation, the anti-fraud notice …
            if isinstance(d, Schedule):
                pending[d.key] = d
            elif isinstance(d, Cancel):
                for key in [k for k in pending if k.startswith(d.key)]:
                    del pending[key]
            elif isinstance(d, Send):
                cart_id = d.idempotency_key.split("|")[2]
                assert cart_id not in purchased, f"stage sent after purchase of {cart_id}"
                sends[cart_id] += 1
        p = remembered(p, decisions)

    def run_until(until: datetime) -> None:
        nonlocal clock
        while (due := sorted((s for s in pending.values() if s.due_at <= until), key=lambda s: s.due_at)):
            s = due[0]
            del pending[s.key]
            clock = max(clock, s.due_at)
            if not timer_of(s).expired(clock):
                apply(on_timer(p, timer_of(s), clock, c), clock)
        clock = max(clock, until)

    for kind, cart_id, minutes in sequence:
        run_until(clock + timedelta(minutes=minutes if kind == "wait" else 1))
        if kind in ("update", "empty"):
            if cart_id in purchased:
                continue  # a shop does not reuse a bought cart's id
            items = [line("Shoes", 10.0 * minutes)] if kind == "update" else []
            event: Event = cart_event(items, cart_id=cart_id, at=clock, total=None if items else 0.0)
        else:
            event = paid(cart_id=cart_id if kind == "pay" else None, at=clock)
            if kind == "pay":
                purchased.add(cart_id)
            else:
                purchased.update(cid for cid, value in ac.carts(evolve(p, event)).items()
                                 if value.status == "purchased")
        p = evolve(p, event)
        if kind != "update" and minutes % 2:
            # the race: timers due within the next minute fire before the payment's Cancel is applied
            run_until(clock + timedelta(minutes=1))
        apply(decide(p, event, clock, c), clock)
    run_until(clock + timedelta(days=5))
    return sends, p


def test_driver_sends_all_three_stages_of_an_abandoned_cart():
    sends, p = drive([("update", "a", 1), ("update", "b", 1), ("pay", "b", 1), ("wait", "a", 60 * 80)])
    assert sends == {"a": 3, "b": 0}
    assert ac.stages_sent(p, "a") == {1, 2, 3}


@settings(max_examples=200, deadline=None)
@given(ops)
def test_never_a_stage_after_purchase_never_more_than_three_per_cart(sequence: list[Op]):
    """Any sequence of cart updates, emptyings, payments and waits (see `drive`)."""
    sends, p = drive(sequence)
    assert all(n <= 3 for n in sends.values())
    for cart_id in sends:
        assert len(ac.stages_sent(p, cart_id)) == len(set(ac.stages_sent(p, cart_id))) <= 3
