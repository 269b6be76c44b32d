"""Exponential backoff with full jitter, shared by every retry loop."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry `attempt` (1-based): base·2^(attempt-1), capped, with full jitter."""

    base_seconds: float = 0.2
    max_seconds: float = 10.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** min(64, max(0, attempt - 1))))
        return (rng or random).uniform(ceiling / 2, ceiling)
