"""Template parameters the Cloud API accepts (CLOUD-API.md §2.4), for every Send of every flow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trigger_engine.domain.decide import decide
from trigger_engine.domain.decisions import Send, Suppress
from trigger_engine.domain.parameters import ParameterRules, UnsendableParameters, clean_parameters

from .factories import T0, config, contact_created, profile

RULES = ParameterRules()


def meta_accepts(parameter: str) -> bool:
    """Meta's rule for a body parameter: text, no newline or tab, at most 4 spaces in a row, no braces."""
    return (bool(parameter) and "\n" not in parameter and "\t" not in parameter and "     " not in parameter
            and "{{" not in parameter and "}}" not in parameter)


@pytest.mark.parametrize(("raw", "clean"), [
    (("Sneaker\nLimited Edition",), ("Sneaker Limited Edition",)),
    (("a\tb", "c\r\nd"), ("a b", "c d")),
    (("five     spaces",), ("five spaces",)),
    (("{{1}}",), ("{ {1} }",)),
    (("\u202eA-1001",), ("A-1001",)),
    (("https://shop.example/t/A-1001", "€149.90"), ("https://shop.example/t/A-1001", "€149.90")),
])
def test_each_parameter_is_cleaned_to_one_line(raw, clean):
    assert clean_parameters(raw, RULES) == clean


def test_a_parameter_is_at_most_the_per_parameter_limit():
    (short,) = clean_parameters(("x" * 50,), ParameterRules(max_parameter_chars=10))
    assert short == "x" * 9 + "…"


def test_the_longest_text_parameter_is_shortened_until_the_body_fits_and_links_are_never_cut():
    rules = ParameterRules(max_body_chars=100, template_text_chars=20)  # 80 characters for parameters
    link = "https://shop.example/t/" + "9" * 30
    params = clean_parameters(("Anna", "x" * 60, link), rules)
    assert params[0] == "Anna" and params[2] == link
    assert params[1] == "x" * (80 - 4 - len(link) - 1) + "…"
    assert sum(map(len, params)) == 80


@pytest.mark.parametrize(("params", "reason"), [
    (("https://shop.example/" + "a" * 100, "x"), f"template parameters need {21 + 100 + 1} characters, the body leaves {100 - 20}"),
    (("ok", "\n\t "), "template parameter 2 is empty once cleaned of control characters and whitespace"),
    (("\x00", "ok", "\u202e"), "template parameter 1, 3 is empty once cleaned of control characters and whitespace"),
])
def test_parameters_that_cannot_be_made_acceptable_are_refused_with_the_reason(params, reason):
    with pytest.raises(UnsendableParameters, match=reason.replace("(", r"\(")):
        clean_parameters(params, ParameterRules(max_body_chars=100, template_text_chars=20))


@given(st.lists(st.text(min_size=1, max_size=400).filter(lambda t: t.strip() and any(c.isalnum() for c in t)),
                min_size=1, max_size=8))
@example(["Sneaker\n\n\tLimited", "{{{x}}}", "a" * 2000])
def test_cleaned_parameters_are_always_what_meta_accepts_and_fit_the_body(params):
    try:
        cleaned = clean_parameters(params, RULES)
    except UnsendableParameters:
        return  # a parameter of only controls and spaces: refused, with its reason
    assert all(meta_accepts(p) for p in cleaned)
    assert all(len(p) <= RULES.max_parameter_chars for p in cleaned)
    assert sum(map(len, cleaned)) <= RULES.max_body_chars - RULES.template_text_chars


def test_every_flow_gets_the_cleaning_a_welcome_name_with_a_line_break_is_one_line():
    event = contact_created(name="Anna\nMaria Schmidt")
    (decision,) = decide(profile(name="Ann\u202ea\tMaria"), event, T0 + timedelta(seconds=1), config())
    assert isinstance(decision, Send)
    assert all(meta_accepts(p) for p in decision.parameters)
    assert decision.parameters[0] == "Anna"


def test_a_send_whose_parameters_cannot_be_cleaned_is_suppressed_with_the_reason():
    from trigger_engine.domain.settings import TenantSettings

    from .factories import payment

    # The longest tracking URL the settings accept, with a long order number: the links alone overflow the body.
    cfg = config(settings=TenantSettings(tracking_url="https://shop.example/" + "t" * 600 + "/{order_id}"))
    (decision,) = decide(profile(), payment(order_id="/" * 100), T0, cfg)
    assert isinstance(decision, Suppress)
    assert decision.reason.startswith("template parameters need")
    assert decision.idempotency_key is not None
