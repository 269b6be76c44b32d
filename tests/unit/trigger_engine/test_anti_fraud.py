"""R-T2.5 anti-fraud notice: orders above 300 (per currency) get a notice 24 h after the payment, unless returned."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from scrm_common.contracts.events import OrderReturned, parse_event
from trigger_engine.domain.anti_fraud import (
    FLOW,
    NOT_CONFIRMED,
    RETURNED,
    SLOT,
    AntiFraudSettings,
    above_threshold,
    anti_fraud_on_timer,
    idempotency_key,
)
from trigger_engine.domain.decide import decide, evolve, on_timer
from trigger_engine.domain.decisions import Cancel, Decision, Schedule, Send, Suppress, Withdraw
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.timers import Timer

from .factories import PHONE, T0, TENANT, config, payment, profile

KEY = f"{TENANT}|anti_fraud_notice|A-1001"
_n = iter(range(1, 10**9))


def returned(order_id: str = "A-1001", *, amount: float = 450.0, at: datetime = T0 + timedelta(hours=3)
             ) -> OrderReturned:
    event = parse_event({"event_id": f"r{next(_n)}", "type": "order.returned", "occurred_at": at.isoformat(),
                         "contact": {"external_id": "cust-1", "phone": PHONE},
                         "data": {"order_id": order_id, "amount": amount}})
    assert isinstance(event, OrderReturned)
    return event


def ours(decisions: tuple[Decision, ...]) -> list[Decision]:
    """The anti-fraud flow's decisions among a payment's (confirmation, welcome …)."""
    return [d for d in decisions if d.flow == FLOW]


def paid(amount: float = 450.0, currency: str = "EUR", *, at: datetime = T0, cfg: EngineConfig | None = None,
         p: ContactProfile | None = None) -> tuple[ContactProfile, list[Decision]]:
    event = payment(amount=amount, currency=currency, at=at)
    p = evolve(p or profile(), event)
    return p, ours(decide(p, event, at + timedelta(seconds=1), cfg or config()))


def fired(p: ContactProfile, *, now: datetime | None = None, cfg: EngineConfig | None = None
          ) -> tuple[Decision, ...]:
    timer = Timer(TENANT, KEY, FLOW, p.contact_key, T0 + timedelta(hours=24), "e-pay", T0 + timedelta(hours=48),
                  {"order_id": "A-1001", "amount": 450.0, "currency": "EUR", "event_id": "e-pay"})
    return on_timer(p, timer, now or timer.due_at + timedelta(seconds=1), cfg or config())


@pytest.mark.parametrize(("amount", "currency", "notice"), [
    (300.0, "EUR", False),  # "above 300": 300 itself is not
    (300.01, "EUR", True),
    (450.0, "EUR", True),
    (299.99, "USD", False),
    (1000.0, "CHF", True),
    (5000.0, "JPY", False),  # 300 yen are two coffees: low-value currencies have their own threshold
    (50_000.0, "JPY", False),
    (50_001.0, "JPY", True),
    (400_000.0, "KRW", False),
    (500_000.0, "KRW", True),
    (30_000.0, "HUF", False),
    (150_000.0, "HUF", True),
    (26_000.0, "INR", False),
    (28_000.0, "INR", True),
    (301.0, "KWD", True),  # not listed: the default threshold
])
def test_orders_above_their_currencys_threshold_get_a_notice_timer_24_h_after_payment(amount, currency, notice):
    assert above_threshold(amount, currency, AntiFraudSettings()) is notice
    _, decisions = paid(amount, currency)
    if not notice:
        assert decisions == []
        return
    (schedule,) = decisions
    assert isinstance(schedule, Schedule)
    assert schedule.key == idempotency_key(TENANT, "A-1001") == KEY
    assert schedule.due_at == T0 + timedelta(hours=24)  # R-T2.5
    assert schedule.expires_at == T0 + timedelta(hours=48)
    assert schedule.payload["order_id"] == "A-1001" and schedule.payload["currency"] == currency


def test_threshold_and_delay_are_settings():
    cfg = config(anti_fraud_notice={"default_threshold": 100.0, "thresholds": {"JPY": 10_000.0}, "delay_hours": 12.0})
    _, (schedule,) = paid(150.0, cfg=cfg)
    assert isinstance(schedule, Schedule) and schedule.due_at == T0 + timedelta(hours=12)
    _, (schedule,) = paid(12_000.0, "JPY", cfg=cfg)
    assert isinstance(schedule, Schedule)


def test_a_duplicate_payment_signal_schedules_the_same_time():
    p, _ = paid(at=T0)
    _, (again,) = paid(at=T0 + timedelta(minutes=7), p=p)  # the gateway's retry, later
    assert isinstance(again, Schedule)
    assert again.due_at == T0 + timedelta(hours=24)


def test_a_return_cancels_the_timer_and_withdraws_a_waiting_notice():
    p, _ = paid()
    event = returned()
    p = evolve(p, event)
    decisions = decide(p, event, event.occurred_at, config())
    cancel, withdraw = decisions
    assert isinstance(cancel, Cancel) and (cancel.key, cancel.reason) == (KEY, RETURNED)
    assert isinstance(withdraw, Withdraw) and (withdraw.idempotency_key, withdraw.reason) == (KEY, RETURNED)
    assert withdraw.account_id == "acct-1"
    assert p.slot(SLOT)["A-1001"]["returned"] is True


def test_a_return_of_a_small_order_cancels_nothing():
    p, _ = paid(49.0)
    event = returned(amount=49.0)
    p = evolve(p, event)
    assert decide(p, event, event.occurred_at, config()) == ()


def test_a_return_of_an_unknown_order_still_cancels():
    event = returned("X-9")
    p = evolve(profile(), event)
    assert [type(d) for d in decide(p, event, event.occurred_at, config())] == [Cancel, Withdraw]


def test_the_timer_sends_the_notice_with_amount_and_support_link():
    p, _ = paid(1234.5)
    (send,) = fired(p)
    assert isinstance(send, Send)
    assert (send.category, send.template, send.idempotency_key) == ("utility", "order_security_notice", KEY)
    order, amount, link = send.parameters
    assert (order, amount) == ("A-1001", "€1,234.50")
    (short,) = send.links
    assert short.kind == "tracked" and short.target == "https://shop.example/help"
    assert link.endswith("/l/" + short.code)
    assert send.expires_at == T0 + timedelta(hours=48)


def test_the_amount_is_in_the_persons_locale():
    p, _ = paid(1234.5, p=profile(locale="de-DE"))
    (send,) = fired(p)
    assert isinstance(send, Send) and send.parameters[1] == "1.234,50 €"


def test_returned_meanwhile_the_timer_is_suppressed():
    p, _ = paid()
    p = evolve(p, returned())
    (decision,) = fired(p)
    assert isinstance(decision, Suppress) and decision.reason == "cancelled: order returned"


def test_a_payment_after_its_return_schedules_nothing():
    p = evolve(profile(), returned(at=T0 - timedelta(minutes=1)))
    _, decisions = paid(p=p)
    (decision,) = decisions
    assert isinstance(decision, Suppress) and decision.reason == RETURNED


@pytest.mark.parametrize(("changes", "now", "reason"), [
    ({"enabled": False}, None, "flow disabled"),
    ({}, T0 + timedelta(hours=48), "expired: the notice was due at"),
    ({"templates": {"de": "order_security_notice"}}, None, "no order_security_notice template for language en_US"),
])
def test_a_notice_that_cannot_go_says_why(changes, now, reason):
    p, _ = paid()
    (decision,) = fired(p, now=now, cfg=config(anti_fraud_notice=changes))
    assert isinstance(decision, Suppress)
    assert decision.reason.startswith(reason)


def test_a_timer_without_the_order_in_memory_uses_its_payload():
    timer = Timer(TENANT, KEY, FLOW, "cust-1", T0, "e", None, {"order_id": "A-1001", "amount": 12800, "currency": "JPY"})
    (send,) = anti_fraud_on_timer(profile(), timer, T0, config())
    assert isinstance(send, Send) and send.parameters[1] == "¥12,800"


def test_a_stale_payment_schedules_nothing_but_says_expired():
    event = payment(amount=450.0, at=T0)
    p = evolve(profile(), event)
    decisions = ours(decide(p, event, T0 + timedelta(hours=49), config()))
    assert [(type(d), getattr(d, "outcome", None)) for d in decisions] == [(Suppress, "expired")]


CONFIRMATION_EXPIRES = T0 + timedelta(minutes=24 * 60)  # order_confirmation.expire_after_minutes (default)


@pytest.mark.parametrize(("now", "changes", "person", "reason"), [
    # the confirmation goes: the notice follows it
    (T0 + timedelta(seconds=1), {}, {}, None),
    (CONFIRMATION_EXPIRES - timedelta(minutes=1), {}, {}, None),
    (CONFIRMATION_EXPIRES, {}, {}, None),  # the confirmation's last moment: still sent
    (T0 + timedelta(minutes=59), {"order_confirmation": {"expire_after_minutes": 60}}, {}, None),
    # the confirmation does not go: no "if you didn't place this order…" either (R-T2.5: after the confirmation)
    (CONFIRMATION_EXPIRES + timedelta(minutes=1), {}, {}, "expired: payment is older than"),  # the user's case
    (T0 + timedelta(minutes=61), {"order_confirmation": {"expire_after_minutes": 60}}, {}, "expired"),
    (T0 + timedelta(seconds=1), {"order_confirmation": {"enabled": False}}, {}, "flow disabled"),
    (T0 + timedelta(seconds=1), {"order_confirmation": {"templates": {"de": "order_confirmation"}}}, {},
     "no order_confirmation template for language en_US"),
    (T0 + timedelta(seconds=1), {}, {"phone": None}, "no phone number known for contact"),  # nor on the payment
    (T0 + timedelta(seconds=1), {"accounts": None}, {}, "no WhatsApp account"),
])
def test_the_notice_is_scheduled_only_when_the_confirmation_of_that_payment_is_sent(now, changes, person, reason):
    changes = dict(changes)
    accounts = changes.pop("accounts", ("acct-1",))
    cfg = config(accounts=accounts, **changes)
    event = payment(amount=450.0, at=T0, **person)
    p = evolve(profile(**person), event)
    decisions = decide(p, event, now, cfg)
    (confirmation,) = [d for d in decisions if d.flow == "order_confirmation"]
    (notice,) = ours(decisions)
    assert isinstance(confirmation, Send) is (reason is None)  # the same decision: both go, or neither
    if reason is None:
        assert isinstance(notice, Schedule) and notice.due_at == T0 + timedelta(hours=24)
        return
    assert isinstance(notice, Suppress) and notice.idempotency_key == KEY and notice.outcome == "suppressed"
    assert notice.reason.startswith(f"{NOT_CONFIRMED}: {reason}"), notice.reason
    assert notice.reason == f"{NOT_CONFIRMED}: {confirmation.reason}" or reason == "no WhatsApp account"


def test_the_anti_fraud_flow_off_says_so_before_the_confirmation():
    event = payment(amount=450.0, at=T0)
    p = evolve(profile(), event)
    cfg = config(anti_fraud_notice={"enabled": False}, order_confirmation={"enabled": False})
    (notice,) = ours(decide(p, event, T0 + timedelta(seconds=1), cfg))
    assert isinstance(notice, Suppress) and notice.reason == "flow disabled"


def test_settings_defaults_are_the_specs():
    s = AntiFraudSettings()
    assert (s.delay_hours, s.default_threshold) == (24.0, 300.0)
    assert s.threshold("EUR") == 300.0 and s.threshold("JPY") > 300
