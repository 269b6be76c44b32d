"""R-T2.5 anti-fraud notice: orders above a per-currency threshold get a short notice 24 h after the confirmation.

(Skeleton: the issue-9 implementation replaces the bodies.)"""

from __future__ import annotations

from datetime import datetime

from scrm_common.contracts.events import Event, OrderReturned, PaymentSucceeded
from trigger_engine.domain.decisions import Decision
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings
from trigger_engine.domain.timers import Timer

FLOW = "anti_fraud_notice"


class AntiFraudSettings(FlowSettings):
    """R-T2.5 (skeleton)."""


def evolve_orders(profile: ContactProfile, event: Event) -> ContactProfile:
    """The person's orders after `event` (memory slot `orders`)."""
    return profile


def decide_anti_fraud(profile: ContactProfile, event: PaymentSucceeded, now: datetime, config: EngineConfig
                      ) -> tuple[Decision, ...]:
    """An order above the threshold → a timer 24 h after the payment."""
    return ()


def cancel_anti_fraud(profile: ContactProfile, event: OrderReturned, now: datetime, config: EngineConfig
                      ) -> tuple[Decision, ...]:
    """A return or refund cancels the pending notice (and withdraws a waiting one)."""
    return ()


def anti_fraud_on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                        ) -> tuple[Decision, ...]:
    """The notice's timer fired: re-check the order, then send."""
    return ()
