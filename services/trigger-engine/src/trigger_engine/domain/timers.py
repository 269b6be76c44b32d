"""A durable timer as the domain sees it when it fires (the timer store keeps them: `adapters.timers`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Timer:
    """A due timer of `tenant`: scheduled by `flow` (a `Schedule` decision) for the person `contact_key`,
    due at `due_at` (aware UTC), not worth firing from `expires_at` on (None: never expires); `payload` is
    what the flow stored with it; `event_id` the event that scheduled it."""

    tenant: str
    key: str
    flow: str
    contact_key: str
    due_at: datetime
    event_id: str
    expires_at: datetime | None = None
    payload: Mapping[str, object] = field(default_factory=dict)

    def expired(self, now: datetime) -> bool:
        """True when the timer is seen at or after its expiry: recorded as expired, never fired late."""
        return self.expires_at is not None and now >= self.expires_at
