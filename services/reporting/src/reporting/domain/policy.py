"""Reporting defaults (R-R1): every number here is configuration."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field


class ReportPolicy(BaseModel):
    """How replies are attributed and how long a report may span."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # An inbound message within this time after the latest message sent to that phone replies to it.
    reply_window: timedelta = timedelta(hours=24)
    default_days: int = Field(default=7, ge=1)
    max_days: int = Field(default=366, ge=1)
