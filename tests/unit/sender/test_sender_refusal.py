"""R-S2 / R-S7: what the sender refuses before queueing, with the reason recorded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sender.domain.refusal import refusal
from sender.domain.templates import Template

TPL = Template("order_confirmation", "en_US", "utility", "Order {{1}}: {{2}}")
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"account_known": False}, "unknown account 100000000000001"),
    ({"invalid_until": NOW + timedelta(days=3)},
     "number marked invalid after an earlier failure, until 2026-12-03T09:00:00+00:00"),
    ({"invalid_until": NOW}, None),  # R-S7: the mark expired
    ({"invalid_until": NOW - timedelta(days=1)}, None),
    # R-S2: a template that is not APPROVED is never sent; the reason names it and its status
    ({"template": Template("order_confirmation", "en_US", "utility", "Order {{1}}: {{2}}", "PAUSED")},
     "template order_confirmation (en_US) is paused"),
    ({"template": Template("order_confirmation", "en_US", "utility", "Order {{1}}: {{2}}", "DISABLED")},
     "template order_confirmation (en_US) is disabled"),
    ({"template": Template("order_confirmation", "en_US", "utility", "Order {{1}}: {{2}}", "REJECTED")},
     "template order_confirmation (en_US) is rejected"),
    ({"template": Template("order_confirmation", "en_US", "utility", "Order {{1}}: {{2}}", "FLAGGED")}, None),
    ({"template": None}, "template order_confirmation (en_US) not found for account 100000000000001"),
    # header and button parameters must fit the template's components
    ({"header_type": "image"}, "template order_confirmation has no header variable, got a image header"),
    ({"buttons": [(0, "url")]}, "template order_confirmation has no url button at index 0 taking a parameter"),
    ({"parameters": ("A1",)}, "template order_confirmation needs 2 variables, got 1"),
    ({"parameters": ("A1", " ")}, "variable {{2}} of template order_confirmation is empty or unfilled"),
    ({}, None),
])
def test_refusal_reasons(kwargs: dict, reason: str | None) -> None:
    args = {"account_id": "100000000000001", "account_known": True, "invalid_until": None, "now": NOW, "template_name": "order_confirmation",
            "language": "en_US", "template": TPL, "parameters": ("A1", "2 items")} | kwargs
    assert refusal(**args) == reason
