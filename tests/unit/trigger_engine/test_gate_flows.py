"""The flows under the send gate (issue 8): the tenant's gate settings (R-S4 quiet hours, R-S5 frequency cap,
R-T4.5 / R-T6.3 fatigue) stamped on every Send as its policy, with the contact's zone; the welcome's expiry
(R-T1.1), its optional delay as a durable timer that re-checks the person when it fires, and a first purchase
withdrawing a welcome that may still be waiting (R-T1)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from scrm_common.contracts.commands import Fatigue, FrequencyCap, GatePolicy, QuietHours
from scrm_common.contracts.events import Event
from trigger_engine.domain.decide import FATIGUE_RULES, TIMER_FLOWS, absorb, decide, evolve, gate_policy, on_timer
from trigger_engine.domain.decisions import Cancel, Decision, Schedule, Send, Suppress, Withdraw
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.order_confirmation import OrderConfirmationSettings
from trigger_engine.domain.settings import (
    FatigueSettings,
    FrequencyCapSettings,
    GateSettings,
    QuietHoursSettings,
    TenantSettings,
    field_faults,
    merge_patch,
)
from trigger_engine.domain.timers import Timer
from trigger_engine.domain.welcome import WelcomeSettings, welcome_on_timer

from .factories import PHONE, T0, TENANT, config, contact_created, marketing_changed, payment, profile

WELCOME_KEY = f"{TENANT}|welcome|cust-1"
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)


def run(events: list[Event], cfg: EngineConfig | None = None, *, start: ContactProfile | None = None,
        lag: timedelta = SECOND) -> tuple[ContactProfile, list[list[Decision]]]:
    """evolve → decide for each event in turn, decided `lag` after it occurred; the profile and the decisions."""
    person = start or ContactProfile("cust-1")
    decided = []
    for event in events:
        person = evolve(person, event)
        decided.append(list(decide(person, event, event.occurred_at + lag, cfg or config())))
    return person, decided


def fire(person: ContactProfile, schedule: Schedule, now: datetime, cfg: EngineConfig | None = None,
         payload: dict[str, Any] | None = None) -> tuple[Decision, ...]:
    """The timer loop firing `schedule` at `now` for `person`."""
    timer = Timer(TENANT, schedule.key, schedule.flow, schedule.contact_key, schedule.due_at, "e-created",
                  schedule.expires_at, dict(schedule.payload) if payload is None else payload)
    return on_timer(person, timer, now, cfg or config())


def delayed(minutes: int = 30, **changes: Any) -> EngineConfig:
    return config(welcome={"delay_minutes": minutes, **changes})


# --- gate settings: SPEC's defaults, validated per field ---------------------------------------------------


@pytest.mark.parametrize(("value", "default"), [
    (GateSettings().quiet_hours.start, "08:00"),  # R-S4
    (GateSettings().quiet_hours.end, "22:00"),  # R-S4
    (GateSettings().frequency_cap.limit, 3),  # R-S5
    (GateSettings().frequency_cap.window_days, 7),  # R-S5
    (GateSettings().fatigue.unread_reminder_threshold, 1.5),  # R-T4.5
    (GateSettings().fatigue.cart_reminder_threshold, 1.8),  # R-T6.3
    (GateSettings().fatigue.pause_days, 7),  # R-T4.5, R-T6.3
    (TenantSettings().gate, GateSettings()),
    (WelcomeSettings().quiet_hours_exempt, False),
    (OrderConfirmationSettings().quiet_hours_exempt, False),
    (WelcomeSettings().delay_minutes, 0),  # R-T1.1: at once
    (WelcomeSettings().expire_after_minutes, 15),  # R-T1.1
])
def test_gate_defaults_are_the_specs(value: Any, default: Any) -> None:
    assert value == default


@pytest.mark.parametrize(("body", "faults"), [
    ({"gate": {"quiet_hours": {"start": "8:00"}}}, {"body.gate.quiet_hours.start"}),
    ({"gate": {"quiet_hours": {"end": "24:00"}}}, {"body.gate.quiet_hours.end"}),
    ({"gate": {"quiet_hours": {"start": "22:00", "end": "22:00"}}}, {"body.gate.quiet_hours"}),
    ({"gate": {"quiet_hours": {"from": "08:00"}}}, {"body.gate.quiet_hours.from"}),
    ({"gate": {"frequency_cap": {"limit": -1}}}, {"body.gate.frequency_cap.limit"}),
    ({"gate": {"frequency_cap": {"limit": 101}}}, {"body.gate.frequency_cap.limit"}),
    ({"gate": {"frequency_cap": {"limit": "3"}}}, {"body.gate.frequency_cap.limit"}),
    ({"gate": {"frequency_cap": {"window_days": 0}}}, {"body.gate.frequency_cap.window_days"}),
    ({"gate": {"frequency_cap": {"window_days": 91}}}, {"body.gate.frequency_cap.window_days"}),
    ({"gate": {"fatigue": {"cart_reminder_threshold": -0.1}}}, {"body.gate.fatigue.cart_reminder_threshold"}),
    ({"gate": {"fatigue": {"unread_reminder_threshold": 101}}}, {"body.gate.fatigue.unread_reminder_threshold"}),
    ({"gate": {"fatigue": {"unread_reminder_threshold": "1.5"}}}, {"body.gate.fatigue.unread_reminder_threshold"}),
    ({"gate": {"fatigue": {"pause_days": 0}}}, {"body.gate.fatigue.pause_days"}),
    ({"gate": {"fatigue": {"pause_days": 1.5}}}, {"body.gate.fatigue.pause_days"}),
    ({"gate": {"caps": {}}}, {"body.gate.caps"}),
    ({"gate": "strict"}, {"body.gate"}),
])
def test_bad_gate_settings_are_refused_naming_the_field(body: dict[str, Any], faults: set[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        TenantSettings.model_validate(body)
    assert {field for field, _ in field_faults(refused.value)} == faults


@pytest.mark.parametrize(("model", "body", "faults"), [
    (WelcomeSettings, {"delay_minutes": -1}, {"body.delay_minutes"}),
    (WelcomeSettings, {"delay_minutes": 1441}, {"body.delay_minutes"}),
    (WelcomeSettings, {"delay_minutes": 5.0}, {"body.delay_minutes"}),
    (WelcomeSettings, {"quiet_hours_exempt": "yes"}, {"body.quiet_hours_exempt"}),
    (OrderConfirmationSettings, {"quiet_hours_exempt": 1}, {"body.quiet_hours_exempt"}),
])
def test_bad_flow_gate_settings_are_refused_naming_the_field(model: type, body: dict[str, Any],
                                                             faults: set[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    assert {field for field, _ in field_faults(refused.value)} == faults


def test_equal_quiet_hour_bounds_say_why() -> None:
    with pytest.raises(ValidationError) as refused:
        QuietHoursSettings(start="09:00", end="09:00")
    assert dict(field_faults(refused.value)) == {
        "body": "start and end are both 09:00: marketing would have no allowed hours (or all of them); give two "
                "different times"}


@pytest.mark.parametrize("body", [
    {"gate": {"quiet_hours": {"start": "00:00", "end": "23:59"}}},
    {"gate": {"quiet_hours": {"start": "22:00", "end": "06:00"}}},  # allowed hours across midnight
    {"gate": {"frequency_cap": {"limit": 0, "window_days": 1}}},
    {"gate": {"frequency_cap": {"limit": 100, "window_days": 90}}},
    {"gate": {"fatigue": {"unread_reminder_threshold": 0, "cart_reminder_threshold": 100, "pause_days": 90}}},
    {"gate": {"fatigue": {"cart_reminder_threshold": 2}}},  # an integer for a threshold
])
def test_gate_values_at_the_edges_are_accepted(body: dict[str, Any]) -> None:
    TenantSettings.model_validate(body)


def test_a_gate_patch_merges_per_key() -> None:
    current = TenantSettings(gate=GateSettings(frequency_cap=FrequencyCapSettings(limit=2))).model_dump(mode="json")
    patched = TenantSettings.model_validate(merge_patch(current, {"gate": {"quiet_hours": {"start": "09:00"}}}))
    assert patched.gate.quiet_hours == QuietHoursSettings(start="09:00", end="22:00")
    assert patched.gate.frequency_cap.limit == 2


# --- the policy: on every Send, from the tenant's and the flow's settings, in one place ---------------------

SPEC_POLICY = GatePolicy(quiet_hours=QuietHours(start=time(8), end=time(22)),
                         frequency_cap=FrequencyCap(limit=3, window_days=7), fatigue=None)
SHOP = TenantSettings(gate=GateSettings(quiet_hours=QuietHoursSettings(start="09:30", end="20:00"),
                                        frequency_cap=FrequencyCapSettings(limit=2, window_days=14),
                                        fatigue=FatigueSettings(cart_reminder_threshold=2.5, pause_days=3)))
SHOP_POLICY = GatePolicy(quiet_hours=QuietHours(start=time(9, 30), end=time(20)),
                         frequency_cap=FrequencyCap(limit=2, window_days=14), fatigue=None)


def every_send(cfg: EngineConfig, person: ContactProfile) -> list[Send]:
    """A welcome (at once), a delayed welcome fired by its timer, and an order confirmation, for `person`."""
    created = contact_created(at=T0)
    (welcome,) = decide(person, created, T0 + SECOND, cfg)
    delayed_cfg = replace(cfg, flows={**cfg.flows, "welcome": WelcomeSettings(delay_minutes=5)})
    (schedule,) = decide(person, created, T0 + SECOND, delayed_cfg)
    assert isinstance(schedule, Schedule)
    (fired,) = fire(person, schedule, schedule.due_at, delayed_cfg)
    (confirmation,) = decide(person, payment(at=T0), T0 + SECOND, cfg)
    sends = [welcome, fired, confirmation]
    assert all(isinstance(s, Send) for s in sends), sends
    return sends  # type: ignore[return-value]


@pytest.mark.parametrize(("settings", "policy"), [
    (TenantSettings(), SPEC_POLICY),
    (SHOP, SHOP_POLICY),
])
def test_every_send_carries_the_tenants_gate_policy(settings: TenantSettings, policy: GatePolicy) -> None:
    for send in every_send(config(settings=settings), profile()):
        assert send.policy == (policy if send.category == "marketing" else None), send.flow


def test_the_default_policy_is_the_one_the_sender_assumes_without_one() -> None:
    assert gate_policy("welcome", config()) == GatePolicy() == SPEC_POLICY


@pytest.mark.parametrize(("zone", "expected"), [("America/Sao_Paulo", "America/Sao_Paulo"), (None, None)])
def test_every_send_carries_the_contacts_zone_as_the_engine_knows_it(zone: str | None, expected: str | None) -> None:
    for send in every_send(config(), profile(timezone=zone)):
        assert send.timezone == (expected if send.category == "marketing" else None), send.flow


def test_a_flow_exempt_from_quiet_hours_gets_no_quiet_hours_but_the_cap() -> None:
    cfg = config(welcome={"quiet_hours_exempt": True}, settings=SHOP)
    (send,) = decide(profile(), contact_created(at=T0), T0 + SECOND, cfg)
    assert isinstance(send, Send)
    assert send.policy == replace_policy(SHOP_POLICY, quiet_hours_exempt=True)
    (confirmation,) = decide(profile(), payment(at=T0), T0 + SECOND, cfg)
    assert isinstance(confirmation, Send) and confirmation.policy is None  # utility: the gate holds it by none


def replace_policy(policy: GatePolicy, **changes: Any) -> GatePolicy:
    return policy.model_copy(update=changes)


@pytest.mark.parametrize(("rule", "threshold"), [("R-T6.3", 2.5), ("R-T4.5", 1.5)])
def test_a_flow_that_names_a_fatigue_rule_gets_the_tenants_threshold_and_pause(
        monkeypatch: pytest.MonkeyPatch, rule: str, threshold: float) -> None:
    monkeypatch.setitem(FATIGUE_RULES, "welcome", rule)  # as the cart flow will: one row
    (send,) = decide(profile(), contact_created(at=T0), T0 + SECOND, config(settings=SHOP))
    assert isinstance(send, Send)
    assert send.policy is not None
    assert send.policy.fatigue == Fatigue(rule=rule, threshold=threshold, pause_days=3)  # type: ignore[arg-type]
    (confirmation,) = decide(profile(), payment(at=T0), T0 + SECOND, config(settings=SHOP))
    assert isinstance(confirmation, Send) and confirmation.policy is None  # utility: no gate policy at all


def test_cart_reminders_are_the_flow_under_the_r_t6_3_fatigue_rule() -> None:
    assert FATIGUE_RULES == {"abandoned_cart": "R-T6.3"}


# --- the welcome's expiry (R-T1.1) -------------------------------------------------------------------------


@pytest.mark.parametrize(("expire_after", "age", "outcome"), [
    (15, timedelta(seconds=5), "send"),
    (15, timedelta(minutes=15), "send"),
    (15, timedelta(minutes=15, seconds=1), "expired"),
    (60, timedelta(minutes=59), "send"),
])
def test_a_welcome_expires_its_minutes_after_the_contact_was_created(expire_after: int, age: timedelta,
                                                                     outcome: str) -> None:
    (decision,) = decide(profile(), contact_created(at=T0), T0 + age, config(welcome={
        "expire_after_minutes": expire_after}))
    if outcome == "send":
        assert isinstance(decision, Send)
        assert decision.expires_at == T0 + timedelta(minutes=expire_after)
    else:
        assert isinstance(decision, Suppress) and decision.outcome == "expired"


def test_an_order_confirmation_expires_when_its_setting_says() -> None:
    (decision,) = decide(profile(), payment(at=T0), T0 + SECOND, config())
    assert isinstance(decision, Send) and decision.expires_at == T0 + timedelta(days=1)


# --- the delayed welcome: a timer, re-checked when it fires -----------------------------------------------


def test_a_delayed_welcome_is_a_timer_due_after_the_delay_expiring_after_that() -> None:
    created = contact_created(at=T0, event_id="e-created")
    (decision,) = decide(profile(), created, T0 + SECOND, delayed(30))
    assert decision == Schedule("welcome", WELCOME_KEY, "cust-1", T0 + 30 * MINUTE, T0 + 45 * MINUTE,
                                {"occurred_at": T0.isoformat(), "event_id": "e-created"})


def test_welcome_timers_are_handled_by_the_welcome_flow() -> None:
    assert TIMER_FLOWS["welcome"] is welcome_on_timer


def test_a_fired_welcome_is_the_same_send_as_the_immediate_one_with_the_timers_expiry() -> None:
    person = profile(name="Anna", locale="de-DE")
    (schedule,) = decide(person, contact_created(at=T0), T0 + SECOND, delayed(30))
    assert isinstance(schedule, Schedule)
    (fired,) = fire(person, schedule, T0 + 31 * MINUTE, delayed(30))
    (immediate,) = decide(person, contact_created(at=T0), T0 + SECOND, config())
    assert isinstance(fired, Send) and isinstance(immediate, Send)
    assert fired == replace(immediate, expires_at=T0 + 45 * MINUTE)


def test_a_fired_welcome_without_its_creation_time_counts_the_code_from_the_due_time() -> None:
    (schedule,) = decide(profile(), contact_created(at=T0), T0 + SECOND, delayed(24 * 60))
    assert isinstance(schedule, Schedule)
    (fired,) = fire(profile(timezone="UTC"), schedule, schedule.due_at, delayed(24 * 60), payload={})
    assert isinstance(fired, Send)
    assert fired.parameters[-1] == "Mar 9, 2026"  # due 2 March + 7 days (from 1 March it would be 8 March)


@pytest.mark.parametrize(("change", "reason"), [
    ({"first_purchase_at": T0 + MINUTE, "first_purchase_event": "e-pay"}, "cancelled: purchased"),
    ({"marketing": "stop"}, "customer stopped marketing messages"),
    ({"opted_in": False}, "contact has not opted in to marketing"),
])
def test_a_fired_welcome_rechecks_the_person_as_of_now(change: dict[str, Any], reason: str) -> None:
    (schedule,) = decide(profile(), contact_created(at=T0), T0 + SECOND, delayed(30))
    assert isinstance(schedule, Schedule)
    (decision,) = fire(profile(**change), schedule, T0 + 30 * MINUTE, delayed(30))
    assert decision == Suppress("welcome", reason, "cust-1", WELCOME_KEY)


def test_a_fired_welcome_of_a_flow_turned_off_meanwhile_is_suppressed() -> None:
    (schedule,) = decide(profile(), contact_created(at=T0), T0 + SECOND, delayed(30))
    assert isinstance(schedule, Schedule)
    (decision,) = fire(profile(), schedule, T0 + 30 * MINUTE, delayed(30, enabled=False))
    assert decision == Suppress("welcome", "flow disabled", "cust-1", WELCOME_KEY)


def test_a_welcome_timer_seen_after_its_expiry_is_expired_not_sent() -> None:
    (schedule,) = decide(profile(), contact_created(at=T0), T0 + SECOND, delayed(30))
    assert isinstance(schedule, Schedule)
    (decision,) = fire(profile(), schedule, T0 + 45 * MINUTE, delayed(30))
    assert isinstance(decision, Suppress) and decision.outcome == "expired"


def test_a_contact_created_event_seen_after_the_delayed_welcome_expired_schedules_nothing() -> None:
    (decision,) = decide(profile(), contact_created(at=T0), T0 + 46 * MINUTE, delayed(30))
    assert isinstance(decision, Suppress) and decision.outcome == "expired"
    assert decision.reason == "expired: contact was created more than 0:45:00 ago"


def test_a_person_who_already_purchased_gets_no_first_purchase_welcome() -> None:
    _, ((confirmation,), (welcome,)) = run([payment(at=T0), contact_created(at=T0 + MINUTE)])
    assert isinstance(confirmation, Send)
    assert welcome == Suppress("welcome", "already purchased: no first-purchase welcome", "cust-1", WELCOME_KEY)


# --- a first purchase withdraws a welcome that may still wait ----------------------------------------------


def withdrawn(decisions: list[Decision]) -> list[Decision]:
    return [d for d in decisions if isinstance(d, Withdraw | Cancel)]


def test_a_first_purchase_withdraws_the_welcome_then_confirms() -> None:
    _, (_, decided) = run([contact_created(at=T0), payment(at=T0 + 2 * MINUTE)])
    assert decided[0] == Withdraw("welcome", WELCOME_KEY, "cust-1", "cancelled: purchased", "acct-1")
    assert isinstance(decided[1], Send) and decided[1].flow == "order_confirmation"
    assert len(decided) == 2, "no timer to cancel: the welcome went at once"


def test_a_first_purchase_also_cancels_a_delayed_welcomes_timer() -> None:
    _, (_, decided) = run([contact_created(at=T0), payment(at=T0 + 2 * MINUTE)], delayed(30))
    assert decided[:2] == [Withdraw("welcome", WELCOME_KEY, "cust-1", "cancelled: purchased", "acct-1"),
                           Cancel("welcome", WELCOME_KEY, "cust-1", "cancelled: purchased")]
    assert isinstance(decided[2], Send) and decided[2].flow == "order_confirmation"


def test_the_withdrawal_names_the_welcomes_own_account() -> None:
    cfg = config(welcome={"account_id": "acct-2"}, accounts=("acct-1", "acct-2"))
    _, (_, decided) = run([contact_created(at=T0), payment(at=T0 + MINUTE)], cfg)
    assert isinstance(decided[0], Withdraw) and decided[0].account_id == "acct-2"


@pytest.mark.parametrize(("delay", "after", "withdraws"), [
    (0, timedelta(minutes=14), True),
    (0, timedelta(minutes=15), False),  # the welcome expired: nothing can be waiting
    (0, timedelta(days=30), False),  # welcomed weeks ago: no withdraw line in the story
    (60, timedelta(minutes=70), True),  # a delayed welcome: due at 60, expiring at 75
    (60, timedelta(minutes=75), False),
])
def test_only_a_welcome_that_may_still_wait_is_withdrawn(delay: int, after: timedelta, withdraws: bool) -> None:
    cfg = delayed(delay)
    _, (_, decided) = run([contact_created(at=T0), payment(at=T0 + after)], cfg)
    assert bool(withdrawn(decided)) is withdraws


def test_a_purchase_decided_after_the_welcomes_deadline_withdraws_nothing() -> None:
    _, (_, decided) = run([contact_created(at=T0), payment(at=T0 + MINUTE)], lag=20 * MINUTE)
    assert withdrawn(decided) == []


def test_a_second_purchase_or_a_duplicate_payment_signal_withdraws_nothing() -> None:
    _, (_, first, second, duplicate) = run([contact_created(at=T0), payment(order_id="A-1", at=T0 + MINUTE),
                                            payment(order_id="A-2", at=T0 + 2 * MINUTE),
                                            payment(order_id="A-1", at=T0 + 3 * MINUTE)])
    assert len(withdrawn(first)) == 1
    assert withdrawn(second) == withdrawn(duplicate) == []


def test_a_contact_recorded_before_creation_times_were_kept_is_not_withdrawn_from() -> None:
    _, (decided,) = run([payment(at=T0)], start=profile())
    assert withdrawn(decided) == []


def test_no_withdrawal_after_a_stop_the_sender_already_dropped_waiting_marketing() -> None:
    _, (_, _, decided) = run([contact_created(at=T0), marketing_changed("stop", wa_id=PHONE[1:], at=T0 + SECOND),
                              payment(at=T0 + MINUTE)])
    assert withdrawn(decided) == []


def test_an_earlier_payment_arriving_late_is_the_first_purchase() -> None:
    person, _ = run([payment(at=T0 + 2 * MINUTE, event_id="e-later"), payment(at=T0 + MINUTE, event_id="e-early")])
    assert (person.first_purchase_at, person.first_purchase_event) == (T0 + MINUTE, "e-early")


def test_evolve_dates_the_person_by_their_earliest_creation() -> None:
    person, _ = run([contact_created(at=T0 + MINUTE), contact_created(at=T0, external_id="guest-1"),
                     contact_created(at=T0 + 2 * MINUTE)])
    assert person.created_at == T0


@pytest.mark.parametrize(("mine", "other", "merged"), [
    # (created_at, first purchase at) of the person, of the absorbed one, and after the merge: the earlier wins
    ((T0, None), (T0 - MINUTE, T0), (T0 - MINUTE, T0)),
    ((None, T0 + MINUTE), (T0, T0), (T0, T0)),
    ((T0, T0), (None, None), (T0, T0)),
    ((T0, T0), (T0 + MINUTE, T0 + MINUTE), (T0, T0)),
])
def test_a_merge_keeps_the_earlier_creation_and_first_purchase(mine: tuple[datetime | None, datetime | None],
                                                               other: tuple[datetime | None, datetime | None],
                                                               merged: tuple[datetime | None, datetime | None]) -> None:
    def person(key: str, created: datetime | None, bought: datetime | None) -> ContactProfile:
        return ContactProfile(key, created_at=created, first_purchase_at=bought,
                              first_purchase_event=f"pay-{key}" if bought else None)

    result = absorb(person("p", *mine), person("o", *other))
    assert (result.created_at, result.first_purchase_at) == merged
    if merged[1] is not None:
        assert result.first_purchase_event == ("pay-p" if mine[1] == merged[1] else "pay-o")


# --- property: once the engine has seen a purchase, no welcome is sent -------------------------------------


@given(delay=st.integers(0, 120), expire_after=st.integers(1, 60),
       bought=st.integers(0, 200), fired_after=st.integers(0, 200), lag=st.integers(0, 200))
def test_never_a_welcome_send_after_a_purchase_was_seen(delay: int, expire_after: int, bought: int,
                                                        fired_after: int, lag: int) -> None:
    """Whatever the delay, the purchase time and when the timer fires: after the engine saw the purchase, the
    welcome is either withdrawn (while it may still wait) or, when its timer fires later, suppressed."""
    cfg = config(welcome={"delay_minutes": delay, "expire_after_minutes": expire_after})
    created = contact_created(at=T0)
    person = evolve(profile(), created)
    scheduled = decide(person, created, T0 + SECOND, cfg)
    paid = payment(at=T0 + bought * MINUTE)
    person = evolve(person, paid)
    decided = decide(person, paid, paid.occurred_at + lag * SECOND, cfg)
    assert not any(isinstance(d, Send) and d.flow == "welcome" for d in decided)
    if paid.occurred_at + lag * SECOND < T0 + (delay + expire_after) * MINUTE:
        assert {type(d) for d in withdrawn(list(decided))} == ({Withdraw, Cancel} if delay else {Withdraw})
    for schedule in scheduled:
        if isinstance(schedule, Schedule):
            now = max(schedule.due_at, paid.occurred_at) + fired_after * SECOND
            assert not any(isinstance(d, Send) for d in fire(person, schedule, now, cfg))

