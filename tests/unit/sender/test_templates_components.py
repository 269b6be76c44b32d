"""R-S2 on Meta's template components: header, body, footer and buttons read from the management API's shape,
and a send's body, header and button parameters checked against them."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sender.adapters.db import default_catalog
from sender.adapters.templates import Backoff, _listed
from sender.domain.templates import (
    BadTemplate,
    Button,
    CannotRender,
    Template,
    check_send,
    from_catalog_entry,
    from_components,
    not_found_reason,
    unsendable_reason,
)

RICH: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
    {"type": "BODY", "text": "Hi {{1}}, your order ships {{2}}."},
    {"type": "FOOTER", "text": "Reply STOP to opt out"},
    {"type": "BUTTONS", "buttons": [
        {"type": "URL", "text": "Track", "url": "https://shop.example/track/{{1}}"},
        {"type": "QUICK_REPLY", "text": "Stop promotions"},
        {"type": "URL", "text": "Shop", "url": "https://shop.example/"},
    ]},
]


def _rich(**overrides: Any) -> Template:
    return from_components(**({"name": "shipping", "language": "en_US", "category": "UTILITY", "status": "APPROVED",
                                "components": RICH, "template_id": "1689556908120001"} | overrides))


def test_components_are_read_in_metas_shape_and_written_back_the_same() -> None:
    template = _rich()
    assert (template.category, template.header_format, template.header_text, template.footer) == (
        "utility", "TEXT", "Order {{1}}", "Reply STOP to opt out")
    assert template.buttons == (Button("URL", "Track", "https://shop.example/track/{{1}}"),
                                Button("QUICK_REPLY", "Stop promotions"), Button("URL", "Shop", "https://shop.example/"))
    assert (template.variable_count, template.header_variable_count) == (2, 1)
    assert template.components() == RICH


@pytest.mark.parametrize("fmt", ["IMAGE", "VIDEO", "DOCUMENT"])
def test_a_media_header_takes_a_link_of_its_type(fmt: str) -> None:
    template = from_components(name="promo", language="de", category="marketing", status="APPROVED",
                               components=[{"type": "HEADER", "format": fmt}, {"type": "BODY", "text": "Hallo {{1}}"}])
    assert template.header_variable_count == 1
    check_send(template, parameters=["Ana"], header_type=fmt.lower())
    with pytest.raises(CannotRender, match=f"needs a {fmt.lower()} header parameter"):
        check_send(template, parameters=["Ana"])


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({}, None),
    ({"buttons": [(0, "url"), (1, "quick_reply")]}, None),  # a quick reply's payload is optional
    ({"parameters": ["Ana"]}, "needs 2 variables, got 1"),
    ({"header_type": None}, "needs a text header parameter"),
    ({"header_type": "image"}, "needs a text header parameter"),
    ({"buttons": []}, "needs the URL parameter of button 0"),
    ({"buttons": [(0, "url"), (2, "url")]}, "has no url button at index 2 taking a parameter"),  # a static URL
    ({"buttons": [(0, "url"), (5, "url")]}, "has no url button at index 5"),
    ({"buttons": [(0, "quick_reply")]}, "has no quick_reply button at index 0"),
])
def test_a_send_must_fit_header_body_and_buttons(kwargs: dict[str, Any], reason: str | None) -> None:
    args: dict[str, Any] = {"parameters": ["Ana", "today"], "header_type": "text", "buttons": [(0, "url")]} | kwargs
    if reason is None:
        check_send(_rich(), **args)
    else:
        with pytest.raises(CannotRender, match=reason):
            check_send(_rich(), **args)


@pytest.mark.parametrize("status", ["PAUSED", "DISABLED", "REJECTED", "PENDING", "DELETED", "IN_APPEAL"])
def test_a_template_that_is_not_approved_is_never_sent(status: str) -> None:
    template = _rich(status=status)
    expected = f"template shipping (en_US) is {status.lower().replace('_', ' ')}"
    assert unsendable_reason(template) == expected
    with pytest.raises(CannotRender, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_send(template, parameters=["Ana", "today"], header_type="text", buttons=[(0, "url")])


def test_the_reason_for_an_unknown_template_names_it_and_the_account() -> None:
    assert not_found_reason("welcome", "fr", "100000000000002") == \
        "template welcome (fr) not found for account 100000000000002"


@pytest.mark.parametrize("components", [[], [{"type": "HEADER", "format": "TEXT", "text": "x"}], ["BODY"]])
def test_a_template_without_a_body_is_refused(components: list[Any]) -> None:
    with pytest.raises(BadTemplate, match="no BODY"):
        from_components(name="t", language="en", category="utility", status="APPROVED", components=components)


def test_the_packaged_catalog_reads_as_approved_templates_with_a_body() -> None:
    catalog = default_catalog()
    assert {(t.name, t.language) for t in catalog} >= {("order_confirmation", "en_US"), ("welcome", "de")}
    assert all(t.status == "APPROVED" and t.body and t.category in ("utility", "marketing") for t in catalog)


def test_a_catalog_entry_may_carry_header_footer_and_buttons() -> None:
    entry = {"name": "shipping", "language": "en_US", "category": "utility", "status": "APPROVED",
             "header": {"format": "TEXT", "text": "Order {{1}}"}, "body": RICH[1]["text"], "footer": RICH[2]["text"],
             "buttons": RICH[3]["buttons"]}
    assert from_catalog_entry(entry).components() == RICH
    assert from_catalog_entry({"name": "x", "language": "en", "components": RICH}).components() == RICH


def test_a_listed_template_keeps_id_quality_and_rejection_reason() -> None:
    listed = _listed({"id": 42, "name": "shipping", "language": "en_US", "status": "REJECTED", "category": "MARKETING",
                      "components": RICH, "quality_score": {"score": "YELLOW", "date": 1795000000},
                      "rejected_reason": "INVALID_FORMAT"})
    assert listed is not None
    assert (listed.template_id, listed.status, listed.category, listed.quality, listed.rejected_reason) == (
        "42", "REJECTED", "marketing", "YELLOW", "INVALID_FORMAT")
    approved = _listed({"id": "7", "name": "w", "language": "de", "status": "APPROVED", "category": "UTILITY",
                        "components": [{"type": "BODY", "text": "Hallo"}], "rejected_reason": "NONE"})
    assert approved is not None and approved.rejected_reason is None and approved.quality is None
    assert _listed({"id": "8", "name": "w", "language": "de", "components": [{"type": "HEADER"}]}) is None


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 9])
def test_the_rate_limit_backoff_doubles_within_its_cap(attempt: int) -> None:
    backoff = Backoff(attempts=5, base_s=1.0, cap_s=8.0)
    ceiling = min(8.0, 2.0 ** (attempt - 1))
    delays = [backoff.delay(attempt, random.Random(seed)) for seed in range(50)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
