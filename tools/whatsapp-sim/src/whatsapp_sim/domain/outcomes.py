"""What happens to an accepted message: the status sequence (and any reply), drawn at random."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

StatusName = Literal["sent", "delivered", "read", "failed"]
STATUS_RANK: dict[str, int] = {"accepted": 0, "sent": 1, "delivered": 2, "read": 3, "failed": 4}
ASYNC_FAILURE_CODES = (131026, 131049)


@dataclass(frozen=True, slots=True)
class OutcomeOdds:
    """Probabilities of each step; `fail` first, then delivered, read (if delivered), reply (if read)."""

    delivered: float = 0.97
    read: float = 0.6
    fail: float = 0.02
    reply: float = 0.05


@dataclass(frozen=True, slots=True)
class PlannedStatus:
    """A status due `after_s` seconds after acceptance."""

    after_s: float
    status: StatusName
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The statuses of one message, and when the customer replies (if they do)."""

    statuses: tuple[PlannedStatus, ...]
    reply_after_s: float | None = None


def _delay(rng: random.Random, delay_ms: tuple[int, int]) -> float:
    return rng.uniform(delay_ms[0], delay_ms[1]) / 1000.0


def plan_outcome(rng: random.Random, odds: OutcomeOdds, delay_ms: tuple[int, int], *,
                 marketing: bool = False) -> Plan:
    """Draw a message's fate: failed (131026, or 131049 for marketing), or sent → delivered → read → reply."""
    at = _delay(rng, delay_ms)
    if rng.random() < odds.fail:
        code = rng.choice(ASYNC_FAILURE_CODES) if marketing else ASYNC_FAILURE_CODES[0]
        return Plan(statuses=(PlannedStatus(at, "failed", code),))
    statuses = [PlannedStatus(at, "sent")]
    if rng.random() >= odds.delivered:
        return Plan(statuses=tuple(statuses))
    at += _delay(rng, delay_ms)
    statuses.append(PlannedStatus(at, "delivered"))
    replies = rng.random() < odds.reply
    if replies or rng.random() < odds.read:
        at += _delay(rng, delay_ms)
        statuses.append(PlannedStatus(at, "read"))
    reply_at = at + _delay(rng, delay_ms) if replies else None
    return Plan(statuses=tuple(statuses), reply_after_s=reply_at)


def failure_plan(rng: random.Random, code: int, delay_ms: tuple[int, int]) -> Plan:
    """A message that is accepted but then fails with `code` (e.g. 131047 in async window mode)."""
    return Plan(statuses=(PlannedStatus(_delay(rng, delay_ms), "failed", code),))


def pricing_for(category: str | None, *, window_open: bool) -> dict[str, object]:
    """The PMP `pricing` object: templates are billed unless utility inside an open window; free-form is free."""
    if category is None:
        return {"billable": False, "pricing_model": "PMP", "type": "free_customer_service", "category": "service"}
    free = category == "utility" and window_open
    return {"billable": not free, "pricing_model": "PMP",
            "type": "free_customer_service" if free else "regular", "category": category}
