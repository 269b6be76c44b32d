"""Segmentation thresholds (R-G1, R-G5, R-G7, R-G8, R-G9): every number a default, none buried in code."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SegmentPolicy(BaseModel):
    """The rule tables of SPEC §G as configuration; windows are inclusive (age <= window)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # R-G1 activity tiers: the age of the contact's last reply (inbound message).
    high_within: timedelta = timedelta(hours=24)
    medium_within: timedelta = timedelta(days=3)
    low_within: timedelta = timedelta(days=7)
    # R-G5 value tiers by spend over the value window.
    value_window: timedelta = timedelta(days=365)
    value_high_above: Decimal = Decimal(5000)
    value_mid_from: Decimal = Decimal(1000)
    # R-G7 rules.
    loyal_purchases: int = Field(default=3, ge=1)
    intent_window: timedelta = timedelta(days=7)
    cross_sell_after: timedelta = timedelta(days=7)
    cross_sell_until: timedelta = timedelta(days=30)
    # R-G8 conflicts: a complaint is a rating below this, or a return, within the window.
    complaint_rating_below: int = Field(default=3, ge=1, le=6)
    complaint_window: timedelta = timedelta(days=30)
    recent_return_window: timedelta = timedelta(days=30)
    # R-G9 never more than this many tags on one contact.
    max_tags: int = Field(default=15, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> SegmentPolicy:
        if not self.high_within <= self.medium_within <= self.low_within:
            raise ValueError("activity windows must grow: high_within <= medium_within <= low_within")
        if self.value_mid_from > self.value_high_above:
            raise ValueError("value_mid_from must not exceed value_high_above")
        if self.cross_sell_after > self.cross_sell_until:
            raise ValueError("cross_sell_after must not exceed cross_sell_until")
        return self
