"""R-T6 abandoned cart: three stages from the cart's own time, cancelled by a purchase or an emptied cart.

(Skeleton: the issue-9 implementation replaces the bodies.)"""

from __future__ import annotations

from datetime import datetime

from scrm_common.contracts.events import CartUpdated, PaymentSucceeded
from trigger_engine.domain.decisions import Decision
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings
from trigger_engine.domain.timers import Timer

FLOW = "abandoned_cart"


class AbandonedCartSettings(FlowSettings):
    """R-T6 (skeleton)."""


def decide_cart(profile: ContactProfile, event: CartUpdated, now: datetime, config: EngineConfig
                ) -> tuple[Decision, ...]:
    """Schedule (or reschedule) the cart's stages; an emptied cart cancels them."""
    return ()


def cancel_carts(profile: ContactProfile, event: PaymentSucceeded, now: datetime, config: EngineConfig
                 ) -> tuple[Decision, ...]:
    """A purchase cancels the stages still pending of the cart it names (or of every cart)."""
    return ()


def cart_on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                  ) -> tuple[Decision, ...]:
    """A stage's timer fired."""
    return ()
