"""R-S5: at most 3 marketing messages per contact per rolling 7 days; the contact's lower limit wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sender.domain.gate.caps import frequency_cap
from sender.domain.gate.verdicts import Suppress

NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
TICK = timedelta(microseconds=1)


def ago(*deltas: timedelta) -> list[datetime]:
    return [NOW - d for d in deltas]


CASES = [
    # (what, sent_at, contact_limit, expected count in the reason or None when allowed)
    ("nothing sent", [], None, None),
    ("two this week", ago(timedelta(days=1), timedelta(days=6)), None, None),
    (
        "three this week: the fourth is over the cap",
        ago(timedelta(hours=1), timedelta(days=2), timedelta(days=5)),
        None,
        3,
    ),
    (
        "three, one exactly 7 days ago: it no longer counts",
        ago(timedelta(hours=1), timedelta(days=2), WEEK),
        None,
        None,
    ),
    (
        "three, one 7 days minus a microsecond ago: still counts",
        ago(timedelta(hours=1), timedelta(days=2), WEEK - TICK),
        None,
        3,
    ),
    ("one in flight right now plus two", ago(timedelta(0), timedelta(days=1), timedelta(days=3)), None, 3),
    (
        "in flight with a later stamp counts",
        [NOW + timedelta(seconds=5), *ago(timedelta(days=1), timedelta(days=3))],
        None,
        3,
    ),
    ("five older than a week", ago(*(WEEK + timedelta(days=i) for i in range(5))), None, None),
    ("four in the week (over already)", ago(*(timedelta(days=i) for i in range(4))), None, 4),
    ("contact says 2 a week, 1 sent", ago(timedelta(days=1)), 2, None),
    ("contact says 2 a week, 2 sent", ago(timedelta(days=1), timedelta(days=2)), 2, 2),
    ("contact says 0: passive", [], 0, 0),
    (
        "contact's higher limit does not raise the cap",
        ago(timedelta(days=1), timedelta(days=2), timedelta(days=3)),
        5,
        3,
    ),
    ("contact limit equal to the cap", ago(timedelta(days=1), timedelta(days=2)), 3, None),
]


@pytest.mark.parametrize(("what", "sent_at", "contact_limit", "count"), CASES, ids=[c[0] for c in CASES])
def test_frequency_cap(what: str, sent_at: list[datetime], contact_limit: int | None, count: int | None) -> None:
    verdict = frequency_cap(sent_at, NOW, contact_limit=contact_limit)
    if count is None:
        assert verdict is None, what
        return
    assert isinstance(verdict, Suppress), what
    assert verdict.rule == "R-S5"
    assert verdict.reason.startswith(f"{count} marketing messages in the last 7 days"), verdict.reason
    cap = min(3, contact_limit) if contact_limit is not None else 3
    assert verdict.reason.endswith(f"is {cap}"), verdict.reason
    assert ("own limit" in verdict.reason) == (contact_limit is not None and contact_limit < 3)


def test_configured_limit_and_window() -> None:
    sent = ago(timedelta(days=1), timedelta(days=20))
    assert frequency_cap(sent, NOW, limit=2, window=timedelta(days=30)) == Suppress(
        "R-S5", "2 marketing messages in the last 30 days; the limit is 2"
    )
    assert frequency_cap(sent, NOW, limit=2, window=timedelta(days=14)) is None


def test_instants_in_other_zones_compare_as_instants() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 7 days minus one hour before NOW, written in Berlin time (UTC+1 in winter): still inside
    inside = (NOW - WEEK + timedelta(hours=1)).astimezone(berlin)
    assert isinstance(frequency_cap([inside, NOW, NOW], NOW), Suppress)
    assert frequency_cap([(NOW - WEEK).astimezone(berlin), NOW, NOW], NOW) is None


@pytest.mark.parametrize(
    ("sent_at", "now", "kwargs"),
    [
        ([datetime(2026, 11, 30, 12, 0)], NOW, {}),
        ([], datetime(2026, 12, 1, 7, 0), {}),
        ([], NOW, {"limit": -1}),
        ([], NOW, {"contact_limit": -2}),
        ([], NOW, {"window": timedelta(0)}),
    ],
    ids=["naive sent_at", "naive now", "negative limit", "negative contact limit", "empty window"],
)
def test_bad_input_is_a_precise_error(sent_at: list[datetime], now: datetime, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="frequency cap"):
        frequency_cap(sent_at, now, **kwargs)  # type: ignore[arg-type]
