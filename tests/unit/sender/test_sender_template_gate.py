"""R-S2: a paused template's messages are held (at most the template hold), disabled/rejected ones fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sender.domain.templates import TemplateGate, status_after_event, template_gate, template_hold_kind

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HOLD = timedelta(hours=24)
RECHECK = timedelta(hours=1)


@pytest.mark.parametrize(("status", "queued_ago", "expected"), [
    ("APPROVED", timedelta(0), TemplateGate("send")),
    ("FLAGGED", timedelta(hours=30), TemplateGate("send")),
    (None, timedelta(0), TemplateGate("send")),  # not in the tenant's status table: the send decides
    ("PAUSED", timedelta(0), TemplateGate("hold", "held: template welcome/en_US paused", NOW + RECHECK)),
    ("PAUSED", timedelta(hours=3), TemplateGate("hold", "held: template welcome/en_US paused", NOW + RECHECK)),
    # the recheck never goes past the end of the hold
    ("PAUSED", timedelta(hours=23, minutes=30),
     TemplateGate("hold", "held: template welcome/en_US paused", NOW + timedelta(minutes=30))),
    ("PAUSED", timedelta(hours=24), TemplateGate("fail", "template welcome/en_US paused for longer than 24 h")),
    ("PAUSED", timedelta(days=3), TemplateGate("fail", "template welcome/en_US paused for longer than 24 h")),
    ("DISABLED", timedelta(0), TemplateGate("fail", "template welcome/en_US is disabled")),
    ("REJECTED", timedelta(minutes=5), TemplateGate("fail", "template welcome/en_US is rejected")),
    ("PENDING", timedelta(0), TemplateGate("fail", "template welcome/en_US is pending")),
])
def test_template_gate(status: str | None, queued_ago: timedelta, expected: TemplateGate) -> None:
    assert template_gate(name="welcome", language="en_US", status=status, queued_at=NOW - queued_ago, now=NOW,
                         max_hold=HOLD, recheck=RECHECK) == expected


@pytest.mark.parametrize(("max_hold", "recheck"), [(timedelta(0), RECHECK), (HOLD, timedelta(0)),
                                                    (timedelta(hours=-1), RECHECK)])
def test_template_gate_refuses_a_non_positive_setting(max_hold: timedelta, recheck: timedelta) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        template_gate(name="w", language="en", status="PAUSED", queued_at=NOW, now=NOW, max_hold=max_hold,
                      recheck=recheck)


@pytest.mark.parametrize(("event", "status"), [("UNPAUSED", "APPROVED"), ("REINSTATED", "APPROVED")])
def test_unpausing_events_make_the_template_sendable(event: str, status: str) -> None:
    assert status_after_event(event) == status


def test_hold_kind_names_template_and_language() -> None:
    assert template_hold_kind("welcome", "en_US") == "template:welcome/en_US"
