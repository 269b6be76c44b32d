"""R-S2 / R-S7: what the sender refuses before queueing, with the reason recorded."""

from __future__ import annotations

import pytest

from sender.domain.refusal import refusal
from sender.domain.templates import Template

TPL = Template("order_confirmation", "en_US", "utility", "Order {{1}}: {{2}}")


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"account_known": False}, "unknown account 100000000000001"),
    ({"number_invalid": True}, "number marked invalid after an earlier failure"),
    ({"template": None}, "no template order_confirmation in en_US"),
    ({"parameters": ("A1",)}, "template order_confirmation needs 2 variables, got 1"),
    ({"parameters": ("A1", " ")}, "variable {{2}} of template order_confirmation is empty or unfilled"),
    ({}, None),
])
def test_refusal_reasons(kwargs: dict, reason: str | None) -> None:
    args = {"account_id": "100000000000001", "account_known": True, "number_invalid": False, "template_name": "order_confirmation",
            "language": "en_US", "template": TPL, "parameters": ("A1", "2 items")} | kwargs
    assert refusal(**args) == reason
