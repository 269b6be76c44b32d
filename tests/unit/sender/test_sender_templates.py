"""R-S2: a template is rendered only when every variable is filled; otherwise nothing is sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.domain.templates import CannotRender, Template, render

CATALOG = Path(__file__).resolve().parents[3] / "services/sender/src/sender/catalog/default_templates.json"
GREETING = Template("welcome", "en_US", "marketing", "Hi {{1}}, use {{2}} by {{3}}.")


def test_all_variables_filled_renders_in_order():
    assert render(GREETING, ["Anna", "CODE", "Friday"]) == "Hi Anna, use CODE by Friday."


def test_repeated_placeholder_counts_once_and_is_filled_everywhere():
    assert render(Template("t", "en_US", "utility", "{{1}} and {{1}}"), ("x",)) == "x and x"


@pytest.mark.parametrize("parameters", [[], ["Anna"], ["Anna", "CODE"], ["Anna", "CODE", "Friday", "extra"]])
def test_wrong_number_of_variables_cannot_render(parameters):
    with pytest.raises(CannotRender, match="needs 3 variables"):
        render(GREETING, parameters)


@pytest.mark.parametrize("bad", ["", " ", "\n\t", "{{1}}", "Hi {{name}}"])
def test_empty_or_unfilled_variable_cannot_render(bad):
    with pytest.raises(CannotRender, match="empty or unfilled"):
        render(GREETING, ["Anna", bad, "Friday"])


@pytest.mark.parametrize("status", ["PAUSED", "DISABLED", "PENDING", "REJECTED"])
def test_template_that_is_not_approved_cannot_render(status):
    template = Template("welcome", "en_US", "marketing", GREETING.body, status=status)
    with pytest.raises(CannotRender, match=status.lower()):
        render(template, ["Anna", "CODE", "Friday"])


def test_cannot_render_is_a_value_error_with_a_reason():
    with pytest.raises(ValueError, match=r"\{\{2\}\}"):
        render(GREETING, ["Anna", "", "Friday"])


def test_template_with_gap_in_numbering_cannot_render_rather_than_crash():
    with pytest.raises(CannotRender):
        render(Template("t", "en_US", "marketing", "Hi {{1}}, see {{3}}"), ["a", "b"])


def _catalog() -> list[dict[str, str]]:
    return json.loads(CATALOG.read_text())


@pytest.mark.parametrize("entry", _catalog(), ids=lambda e: f"{e['name']}-{e['language']}")
def test_every_catalog_template_is_approved_and_numbered_without_gaps(entry):
    template = Template(entry["name"], entry["language"], entry["category"], entry["body"], entry["status"])
    assert template.status == "APPROVED"
    values = [f"v{i}" for i in range(1, template.variable_count + 1)]
    text = render(template, values)
    assert "{{" not in text
    assert all(v in text for v in values)


def test_catalog_languages_of_one_template_take_the_same_variables():
    counts: dict[str, set[int]] = {}
    for entry in _catalog():
        counts.setdefault(entry["name"], set()).add(Template("", "", "", entry["body"]).variable_count)
    assert all(len(c) == 1 for c in counts.values()), counts


@given(st.lists(st.text(min_size=1).filter(lambda v: v.strip() and "{{" not in v), min_size=3, max_size=3))
def test_any_filled_values_appear_verbatim(values):
    text = render(GREETING, values)
    assert text == f"Hi {values[0]}, use {values[1]} by {values[2]}."
