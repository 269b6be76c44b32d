"""R-S2: Meta's template status events keep the templates true; a template that is not APPROVED is never sent."""

from __future__ import annotations

import pytest

from sender.domain.templates import CannotRender, Template, render, status_after_event

TPL = "Order {{1}} confirmed"


@pytest.mark.parametrize(("event", "status"), [
    ("APPROVED", "APPROVED"), ("REINSTATED", "APPROVED"), ("FLAGGED", "FLAGGED"), ("PAUSED", "PAUSED"),
    ("DISABLED", "DISABLED"), ("REJECTED", "REJECTED"), ("paused", "PAUSED"), ("DELETED", "DELETED"),
    ("PENDING_DELETION", "PENDING_DELETION"), ("UNPAUSED", "APPROVED"), (None, None), ("IN_APPEAL", "IN_APPEAL"),
    ("", None), ("CATEGORY_UPDATED", None),
])
def test_status_after_event(event: str | None, status: str | None) -> None:
    assert status_after_event(event) == status


@pytest.mark.parametrize(("status", "refused"), [
    ("APPROVED", None), ("FLAGGED", None), ("PAUSED", r"template t \(en\) is paused"),
    ("DISABLED", r"template t \(en\) is disabled"), ("REJECTED", r"template t \(en\) is rejected"),
    ("PENDING", r"template t \(en\) is pending"), ("PENDING_DELETION", r"template t \(en\) is pending deletion"),
])
def test_only_approved_or_flagged_templates_are_sent(status: str, refused: str | None) -> None:
    template = Template("t", "en", "utility", TPL, status)
    if refused is None:
        assert render(template, ["A1"]) == "Order A1 confirmed"
    else:
        with pytest.raises(CannotRender, match=refused):
            render(template, ["A1"])
