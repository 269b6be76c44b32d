"""Fatigue: R-T4.5 (unread reminders) and R-T6.3 (cart reminders), boundaries exactly at the thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sender.domain.gate.fatigue import cart_fatigue, cart_fatigue_score, reminder_fatigue, reminder_fatigue_score
from sender.domain.gate.verdicts import Suppress

NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
PAUSED_UNTIL = (NOW + 7 * DAY).isoformat()


def reminders(n: int, *, older: int = 0) -> list[datetime]:
    """``n`` reminders inside the last 7 days plus ``older`` ones outside it."""
    return [NOW - (i + 1) * HOUR for i in range(n)] + [NOW - 7 * DAY - (i + 1) * HOUR for i in range(older)]


# R-T4.5: 0.7 × reminders in the window + 0.3 × average reply delay (days); > 1.5 pauses
REMINDER_CASES = [
    # (what, reminders sent, reply delays, expected score, paused?)
    ("nothing at all", reminders(0), [], 0.0, False),
    ("two reminders, no replies measured", reminders(2), [], 1.4, False),
    ("two reminders, 1/3 day delay: exactly 1.5", reminders(2), [8 * HOUR], 1.5, False),
    (
        "two reminders, 8 h + 1 min delay: over",
        reminders(2),
        [8 * HOUR + timedelta(minutes=1)],
        1.4 + 0.3 * (481 / 1440),
        True,
    ),
    ("one reminder, delays averaging 8/3 days: exactly 1.5", reminders(1), [2 * DAY, 3 * DAY + 8 * HOUR], 1.5, False),
    ("no reminders, 5 days delay: exactly 1.5", reminders(0), [5 * DAY], 1.5, False),
    ("no reminders, 6 days delay: 1.8", reminders(0), [6 * DAY], 1.8, True),
    ("three reminders: 2.1", reminders(3), [], 2.1, True),
    ("three reminders but older than 7 days", reminders(0, older=3), [], 0.0, False),
]


@pytest.mark.parametrize(
    ("what", "sent", "delays", "score", "paused"), REMINDER_CASES, ids=[c[0] for c in REMINDER_CASES]
)
def test_reminder_fatigue(what: str, sent: list[datetime], delays: list[timedelta], score: float, paused: bool) -> None:
    assert reminder_fatigue_score(sent, delays, NOW) == pytest.approx(score), what
    verdict = reminder_fatigue(sent, delays, NOW)
    if not paused:
        assert verdict is None, what
        return
    assert isinstance(verdict, Suppress), what
    assert verdict.rule == "R-T4.5"
    assert f"{reminder_fatigue_score(sent, delays, NOW):g} > 1.5" in verdict.reason
    assert PAUSED_UNTIL in verdict.reason


def test_reminder_exactly_seven_days_ago_is_outside_the_window() -> None:
    edge = [NOW - 7 * DAY, NOW - 7 * DAY + timedelta(microseconds=1)]
    assert reminder_fatigue_score(edge, [], NOW) == pytest.approx(0.7)


def test_reminder_thresholds_and_weights_are_settings() -> None:
    sent = reminders(2)
    assert reminder_fatigue(sent, [], NOW, threshold=1.4) is None  # 1.4 is not above 1.4
    assert isinstance(reminder_fatigue(sent, [], NOW, threshold=1.39), Suppress)
    assert reminder_fatigue_score(sent, [DAY], NOW, reminder_weight=1.0, delay_weight=1.0) == pytest.approx(3.0)
    assert reminder_fatigue_score(reminders(1, older=2), [], NOW, window=30 * DAY) == pytest.approx(2.1)


# R-T6.3: cart reminders in the last 7 days × 0.6 − read rate × 0.4; > 1.8 pauses
CART_CASES = [
    # (what, reminders, delivered, read, expected index, paused?)
    ("none", reminders(0), 0, 0, 0.0, False),
    ("three reminders, never read: exactly 1.8", reminders(3), 10, 0, 1.8, False),
    ("three reminders, nothing delivered yet: exactly 1.8", reminders(3), 0, 0, 1.8, False),
    ("three reminders, all read: 1.4", reminders(3), 4, 4, 1.4, False),
    ("four reminders, all read: 2.0", reminders(4), 5, 5, 2.0, True),
    ("four reminders, half read: 2.2", reminders(4), 10, 5, 2.2, True),
    ("four reminders, never read: 2.4", reminders(4), 3, 0, 2.4, True),
    ("four reminders but one older than a week: 1.8 with none read", reminders(3, older=1), 8, 0, 1.8, False),
]


@pytest.mark.parametrize(
    ("what", "sent", "delivered", "read", "score", "paused"), CART_CASES, ids=[c[0] for c in CART_CASES]
)
def test_cart_fatigue(what: str, sent: list[datetime], delivered: int, read: int, score: float, paused: bool) -> None:
    assert cart_fatigue_score(sent, delivered, read, NOW) == pytest.approx(score), what
    verdict = cart_fatigue(sent, delivered, read, NOW)
    if not paused:
        assert verdict is None, what
        return
    assert isinstance(verdict, Suppress), what
    assert verdict.rule == "R-T6.3"
    assert f"cart fatigue {score:g} > 1.8" in verdict.reason
    assert PAUSED_UNTIL in verdict.reason


def test_cart_threshold_is_a_setting() -> None:
    assert isinstance(cart_fatigue(reminders(3), 10, 0, NOW, threshold=1.7), Suppress)
    assert cart_fatigue(reminders(4), 10, 0, NOW, threshold=2.4) is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: reminder_fatigue([datetime(2026, 11, 30)], [], NOW), "aware"),
        (lambda: reminder_fatigue([], [], datetime(2026, 12, 1)), "aware"),
        (lambda: reminder_fatigue([], [-HOUR], NOW), "negative"),
        (lambda: reminder_fatigue([], [], NOW, window=timedelta(0)), "window"),
        (lambda: cart_fatigue([], 3, 4, NOW), "read <= delivered"),
        (lambda: cart_fatigue([], -1, 0, NOW), "read <= delivered"),
        (lambda: cart_fatigue([datetime(2026, 11, 30)], 1, 1, NOW), "aware"),
    ],
    ids=["naive reminder", "naive now", "negative delay", "empty window", "read > delivered", "negative", "naive cart"],
)
def test_bad_input_is_a_precise_error(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


def test_float_noise_does_not_push_a_score_at_the_threshold_over_it() -> None:
    # 0.1 × 3 is 0.30000000000000004 in binary floating point; mathematically it is exactly 0.3
    assert cart_fatigue(reminders(3), 0, 0, NOW, reminder_weight=0.1, threshold=0.3) is None
    assert reminder_fatigue(reminders(3), [], NOW, reminder_weight=0.1, delay_weight=0.0, threshold=0.3) is None
