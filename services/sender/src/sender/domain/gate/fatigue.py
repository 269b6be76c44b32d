"""Fatigue rules: pause a kind of message for a contact who is getting too many of them.

* R-T4.5 (unread reminders): ``0.7 × reminders in the recent window + 0.3 × average reply delay
  (days)``; above 1.5 → pause all reminders to that contact for 7 days.
* R-T6.3 (cart reminders): ``reminders in the last 7 days × 0.6 − historical read rate × 0.4``;
  above 1.8 → pause cart reminders for 7 days.

Both compare with a strict ``>``: a score exactly at the threshold does not pause. Scores are
rounded to 9 decimals before the comparison so binary float noise (0.7 × 2 + 0.3 × 1/3) cannot move
a score that is mathematically at the threshold across it. Weights, thresholds and windows are
parameters (tenant settings); the defaults are the SPEC's. The rules return a ``Suppress`` whose
reason carries the score; remembering the 7-day pause is the caller's (the reason says until when).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sender.domain.gate.verdicts import Suppress, Verdict

REMINDER_RULE = "R-T4.5"
CART_RULE = "R-T6.3"
PAUSE = timedelta(days=7)
_DIGITS = 9


def _check_aware(now: datetime, instants: Sequence[datetime], what: str) -> None:
    if now.tzinfo is None or any(t.tzinfo is None for t in instants):
        raise ValueError(f"{what}: datetimes must be timezone-aware")


def _recent(instants: Sequence[datetime], now: datetime, window: timedelta) -> int:
    since = now - window
    return sum(1 for t in instants if since < t <= now)


def reminder_fatigue_score(
    reminders_sent_at: Sequence[datetime],
    reply_delays: Sequence[timedelta],
    now: datetime,
    *,
    window: timedelta = timedelta(days=7),
    reminder_weight: float = 0.7,
    delay_weight: float = 0.3,
) -> float:
    """R-T4.5's coefficient: ``reminder_weight × (reminders with now - window < sent_at <= now)
    + delay_weight × mean(reply_delays) in days`` (0 when there are no measured replies), rounded
    to 9 decimals. Raises ``ValueError`` for naive datetimes, a negative delay or a non-positive window."""
    _check_aware(now, reminders_sent_at, "reminder fatigue")
    if window <= timedelta(0):
        raise ValueError(f"reminder fatigue: the window must be positive, got {window}")
    if any(d < timedelta(0) for d in reply_delays):
        raise ValueError("reminder fatigue: a reply delay cannot be negative")
    day = timedelta(days=1)
    mean_days = sum(d / day for d in reply_delays) / len(reply_delays) if reply_delays else 0.0
    recent = _recent(reminders_sent_at, now, window)
    return round(reminder_weight * recent + delay_weight * mean_days, _DIGITS)


def reminder_fatigue(
    reminders_sent_at: Sequence[datetime],
    reply_delays: Sequence[timedelta],
    now: datetime,
    *,
    threshold: float = 1.5,
    window: timedelta = timedelta(days=7),
    reminder_weight: float = 0.7,
    delay_weight: float = 0.3,
    pause: timedelta = PAUSE,
) -> Verdict | None:
    """R-T4.5 for one more unread reminder at ``now``: ``None`` while the score (see
    ``reminder_fatigue_score``) is ``<= threshold``, else ``Suppress("R-T4.5", reason)`` with the
    score, the threshold and the end of the pause (``now + pause``, UTC ISO)."""
    score = reminder_fatigue_score(
        reminders_sent_at, reply_delays, now, window=window, reminder_weight=reminder_weight, delay_weight=delay_weight
    )
    if score <= threshold:
        return None
    return Suppress(
        REMINDER_RULE,
        f"reminder fatigue {score:g} > {threshold:g}: reminders paused until {(now + pause).isoformat()}",
    )


def cart_fatigue_score(
    reminders_sent_at: Sequence[datetime],
    delivered: int,
    read: int,
    now: datetime,
    *,
    window: timedelta = timedelta(days=7),
    reminder_weight: float = 0.6,
    read_weight: float = 0.4,
) -> float:
    """R-T6.3's index: ``reminder_weight × (cart reminders with now - window < sent_at <= now)
    − read_weight × read/delivered`` (the historical read rate, 0 when nothing was delivered),
    rounded to 9 decimals. Raises ``ValueError`` for naive datetimes, negative counts,
    ``read > delivered`` or a non-positive window."""
    _check_aware(now, reminders_sent_at, "cart fatigue")
    if window <= timedelta(0):
        raise ValueError(f"cart fatigue: the window must be positive, got {window}")
    if delivered < 0 or read < 0 or read > delivered:
        raise ValueError(f"cart fatigue: need 0 <= read <= delivered, got read={read}, delivered={delivered}")
    rate = read / delivered if delivered else 0.0
    recent = _recent(reminders_sent_at, now, window)
    return round(reminder_weight * recent - read_weight * rate, _DIGITS)


def cart_fatigue(
    reminders_sent_at: Sequence[datetime],
    delivered: int,
    read: int,
    now: datetime,
    *,
    threshold: float = 1.8,
    window: timedelta = timedelta(days=7),
    reminder_weight: float = 0.6,
    read_weight: float = 0.4,
    pause: timedelta = PAUSE,
) -> Verdict | None:
    """R-T6.3 for one more cart reminder at ``now``: ``None`` while the index (see
    ``cart_fatigue_score``) is ``<= threshold``, else ``Suppress("R-T6.3", reason)`` with the index,
    the threshold and the end of the pause (``now + pause``)."""
    score = cart_fatigue_score(
        reminders_sent_at, delivered, read, now, window=window, reminder_weight=reminder_weight, read_weight=read_weight
    )
    if score <= threshold:
        return None
    return Suppress(
        CART_RULE,
        f"cart fatigue {score:g} > {threshold:g}: cart reminders paused until {(now + pause).isoformat()}",
    )
