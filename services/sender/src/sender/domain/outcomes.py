"""What to do after the provider answered: by error code, never by HTTP status (CLOUD-API §4)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from scrm_common.backoff import Backoff


class Next(Enum):
    SENT = "sent"
    RETRY = "retry"  # throughput limits, 5xx, connection refused: back off and try again
    RETRY_RECIPIENT = "retry_recipient"  # pair rate limit: only this recipient waits, 4^x s
    INVALID_NUMBER = "invalid_number"  # mark the number, leave it out of later sends (R-S7)
    FAILED = "failed"  # permanent for this message
    IN_DOUBT = "in_doubt"  # the request may have reached the provider: wait for evidence


RETRYABLE = {1, 2, 4, 80007, 130429, 131000, 131016, 131057, 133004}
INVALID_NUMBER = {131009, 131026, 131030, 131021}
PAIR_LIMIT = 131056


def classify(code: int | None) -> Next:
    """The policy for an error code from a synchronous error body."""
    if code is None:
        return Next.RETRY
    if code == PAIR_LIMIT:
        return Next.RETRY_RECIPIENT
    if code in RETRYABLE:
        return Next.RETRY
    if code in INVALID_NUMBER:
        return Next.INVALID_NUMBER
    return Next.FAILED


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """R-S7: exponential backoff with jitter, a bounded number of attempts."""

    max_attempts: int = 8
    backoff: Backoff = Backoff(base_seconds=0.5, max_seconds=60.0)

    def next_attempt_at(self, next_: Next, attempts: int, now: datetime, jitter: float) -> datetime | None:
        """When to try again, or None when attempts are exhausted."""
        if attempts >= self.max_attempts:
            return None
        if next_ is Next.RETRY_RECIPIENT:
            return now + timedelta(seconds=4 ** max(0, attempts - 1))  # Meta's advice: 1, 4, 16 … s
        ceiling = min(self.backoff.max_seconds, self.backoff.base_seconds * 2 ** max(0, attempts - 1))
        return now + timedelta(seconds=ceiling / 2 + ceiling / 2 * jitter)
