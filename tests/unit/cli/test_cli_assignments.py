"""`key=value` arguments of `scrm flows set` / `scrm settings set`: JSON when it parses, dotted keys nest."""

from __future__ import annotations

from typing import Any

import pytest

from scrm_cli.assignments import BadAssignment, parse_assignments, parse_value


@pytest.mark.parametrize(("text", "value"), [
    ("false", False), ("true", True), ("null", None), ("3", 3), ("2.5", 2.5), ("-1", -1), ("[1, 7]", [1, 7]),
    ('{"a": 1}', {"a": 1}), ('"42"', "42"), ("order_confirmation", "order_confirmation"),
    ("Europe/Berlin", "Europe/Berlin"), ("09:00", "09:00"), ("", ""), ("https://shop.example/track?o=1",
                                                                      "https://shop.example/track?o=1"),
    ("a=b", "a=b"),
])
def test_a_value_is_json_when_it_parses_else_a_string(text: str, value: Any) -> None:
    assert parse_value(text) == value


@pytest.mark.parametrize(("items", "body"), [
    (["enabled=false"], {"enabled": False}),
    (["templates.de=order_confirmation", "templates.en=order_confirmation_en"],
     {"templates": {"de": "order_confirmation", "en": "order_confirmation_en"}}),
    (["business_hours.start=08:00", "business_hours.days=[1,2,3]", "time_zone=Europe/Vienna"],
     {"business_hours": {"start": "08:00", "days": [1, 2, 3]}, "time_zone": "Europe/Vienna"}),
    (["account_id=null", "delay_minutes=15"], {"account_id": None, "delay_minutes": 15}),
    (["support_url=https://x.example/?a=b"], {"support_url": "https://x.example/?a=b"}),  # first `=` splits
    (["a.b.c=1"], {"a": {"b": {"c": 1}}}),
    # a phone number id is all digits but an identifier: text, as the APIs want it
    (["account_id=100000000000002"], {"account_id": "100000000000002"}),
    (["default_account_id=100000000000002"], {"default_account_id": "100000000000002"}),
    (['account_id="100000000000002"'], {"account_id": "100000000000002"}),
])
def test_assignments_build_the_patch_body(items: list[str], body: dict[str, Any]) -> None:
    assert parse_assignments(items) == body


@pytest.mark.parametrize(("items", "reason"), [
    ([], "nothing to set"),
    (["enabled"], "'enabled' is not key=value"),
    (["=1"], "is not key=value"),
    (["templates.=x"], "has an empty part"),
    (["enabled=true", "enabled=false"], "'enabled' is already set"),
    (["templates=1", "templates.de=x"], "'templates' is already set to a value"),
    (["templates.de=x", "templates=1"], "'templates' is already set"),
])
def test_bad_assignments_say_which_and_why(items: list[str], reason: str) -> None:
    with pytest.raises(BadAssignment, match=None) as caught:
        parse_assignments(items)
    assert reason in str(caught.value)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", "-1E400", "[2, NaN]", '{"x": {"y": 1e999}}'])
def test_a_number_json_cannot_carry_is_refused(text: str) -> None:
    with pytest.raises(BadAssignment, match="not a finite number"):
        parse_value(text)
    with pytest.raises(BadAssignment, match="'delay=.*not a finite number"):
        parse_assignments([f"delay={text}"])


@pytest.mark.parametrize(("text", "value"), [("1e308", 1e308), ("nan", "nan"), ("Inf", "Inf"), ('"NaN"', "NaN")])
def test_finite_numbers_and_words_that_only_look_like_infinity_pass(text: str, value: Any) -> None:
    assert parse_value(text) == value
