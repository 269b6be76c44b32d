"""R-T6.2 price drop: a price falling by more than 5 % reaches every open cart holding the item.

(Skeleton: the issue-9 implementation replaces the bodies.)"""

from __future__ import annotations

from datetime import datetime

from scrm_common.contracts.events import ProductPriceChanged
from trigger_engine.domain.decisions import Decision
from trigger_engine.domain.model import ContactProfile, EngineConfig
from trigger_engine.domain.settings import FlowSettings
from trigger_engine.domain.timers import Timer

FLOW = "price_drop"


class PriceDropSettings(FlowSettings):
    """R-T6.2 (skeleton)."""


def decide_price_change(event: ProductPriceChanged, now: datetime, config: EngineConfig) -> tuple[Decision, ...]:
    """A drop of more than the threshold → a FanOut to every person with the SKU in an open cart."""
    return ()


def price_drop_on_timer(profile: ContactProfile, timer: Timer, now: datetime, config: EngineConfig
                        ) -> tuple[Decision, ...]:
    """One person's price-drop message, at most 2 per item per 7 days."""
    return ()
