"""R-S2: Meta's template status events keep the catalog true; paused/disabled templates are refused."""

from __future__ import annotations

import pytest

from sender.domain.templates import CannotRender, Template, render, status_after_event

TPL = "Order {{1}} confirmed"


@pytest.mark.parametrize(("event", "status"), [
    ("APPROVED", "APPROVED"), ("REINSTATED", "APPROVED"), ("FLAGGED", "FLAGGED"), ("PAUSED", "PAUSED"),
    ("DISABLED", "DISABLED"), ("REJECTED", "REJECTED"), ("paused", "PAUSED"), ("DELETED", "DISABLED"),
    ("PENDING_DELETION", "DISABLED"), (None, None), ("IN_APPEAL", None), ("", None),
])
def test_status_after_event(event: str | None, status: str | None) -> None:
    assert status_after_event(event) == status


@pytest.mark.parametrize(("status", "refused"), [
    ("APPROVED", None), ("FLAGGED", None), ("PAUSED", "template t/en is paused"),
    ("DISABLED", "template t/en is disabled"), ("REJECTED", "template t/en is rejected"),
    ("PENDING", "template t/en is pending"),
])
def test_only_approved_or_flagged_templates_are_sent(status: str, refused: str | None) -> None:
    template = Template("t", "en", "utility", TPL, status)  # type: ignore[arg-type]
    if refused is None:
        assert render(template, ["A1"]) == "Order A1 confirmed"
    else:
        with pytest.raises(CannotRender, match=refused):
            render(template, ["A1"])
