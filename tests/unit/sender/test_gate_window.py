"""The 24 h customer-service window (CLOUD-API §6.1): free-form only while it is open, templates always."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.domain.gate.verdicts import Suppress
from sender.domain.gate.window import WindowMessage, free_form, window_open

NOW = datetime(2026, 3, 29, 12, 0, tzinfo=UTC)
TEXT = WindowMessage(free_form=True)
TEMPLATE = WindowMessage(free_form=False)

OPEN = [
    ("never wrote", None, False),
    ("wrote just now", NOW, True),
    ("wrote 23:59:59 ago", NOW - timedelta(hours=23, minutes=59, seconds=59), True),
    ("wrote 24 h minus a microsecond ago", NOW - timedelta(hours=24) + timedelta(microseconds=1), True),
    ("wrote exactly 24 h ago: closed", NOW - timedelta(hours=24), False),
    ("wrote 24 h and a second ago", NOW - timedelta(hours=24, seconds=1), False),
    ("wrote three days ago", NOW - timedelta(days=3), False),
]


@pytest.mark.parametrize(("what", "last_inbound_at", "expected"), OPEN, ids=[c[0] for c in OPEN])
def test_window_open(what: str, last_inbound_at: datetime | None, expected: bool) -> None:
    assert window_open(last_inbound_at, NOW) is expected, what


def test_the_window_is_measured_in_instants_not_wall_clocks() -> None:
    # 23 h of real time across Berlin's spring-forward: the wall clock says 24 h, the window is still open
    berlin = ZoneInfo("Europe/Berlin")
    last = datetime(2026, 3, 28, 12, 30, tzinfo=berlin)
    now = datetime(2026, 3, 29, 12, 30, tzinfo=berlin)
    assert now - last == timedelta(hours=24)  # Python's same-zone arithmetic is wall-clock …
    assert window_open(last.astimezone(UTC), now.astimezone(UTC))  # … the gate is given UTC instants


@pytest.mark.parametrize(("what", "last_inbound_at", "_"), OPEN, ids=[c[0] for c in OPEN])
def test_templates_are_never_stopped_by_the_window(what: str, last_inbound_at: datetime | None, _: bool) -> None:
    assert free_form(TEMPLATE, last_inbound_at, NOW) is None, what


def test_free_form_inside_the_window_goes() -> None:
    assert free_form(TEXT, NOW - timedelta(hours=23), NOW) is None


def test_free_form_outside_the_window_is_suppressed_naming_when_it_closed() -> None:
    last = datetime(2026, 3, 27, 9, 15, tzinfo=UTC)
    verdict = free_form(TEXT, last, NOW)
    assert isinstance(verdict, Suppress)
    assert verdict.rule == "WINDOW"
    assert "2026-03-28T09:15:00+00:00" in verdict.reason  # closed 24 h after the last inbound message
    assert "2026-03-27T09:15:00+00:00" in verdict.reason


def test_free_form_to_a_contact_who_never_wrote_is_suppressed() -> None:
    verdict = free_form(TEXT, None, NOW)
    assert isinstance(verdict, Suppress)
    assert verdict.rule == "WINDOW"
    assert "no inbound message" in verdict.reason


@given(ago=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5)), is_free_form=st.booleans())
def test_only_free_form_outside_24h_is_suppressed(ago: timedelta, is_free_form: bool) -> None:
    verdict = free_form(WindowMessage(free_form=is_free_form), NOW - ago, NOW)
    if is_free_form and ago >= timedelta(hours=24):
        assert isinstance(verdict, Suppress) and verdict.rule == "WINDOW"
    else:
        assert verdict is None
