"""Short codes, UTM tags and signed resume tokens (R-T6.5, R-R4): `scrm_common.links`, shared by the trigger-engine
(which mints links) and ingest (which answers them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scrm_common.links import (
    ALPHABET,
    MAX_LINK_CHARS,
    LinkExpired,
    LinkTampered,
    _serializer,
    code_length,
    read_resume,
    short_code,
    short_url,
    sign_resume,
    with_utm,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "a-real-link-secret"


@pytest.mark.parametrize(("base", "chars"), [
    ("https://wa.shop.de", 9),  # 18 characters
    ("https://wa.shops.de", 8),  # 19: the README's bound for 8-character codes
    ("http://127.0.0.1:8080", 6),  # the embedded stack: 6 keeps the link at 30
    ("https://go.example-shop.com", 6),  # too long for 30: never fewer than 6 characters of code
    ("https://s.io", 12),  # never more than 12
])
def test_codes_are_as_long_as_the_30_character_budget_allows(base: str, chars: int) -> None:
    assert code_length(base) == chars
    link = short_url(base, short_code(SECRET, "demo", "k", "resume", chars=chars))
    assert len(link) <= MAX_LINK_CHARS or chars == 6


def test_a_code_is_base62_deterministic_and_differs_per_slot_message_tenant_and_secret() -> None:
    code = short_code(SECRET, "demo", "demo|abandoned_cart|c1|1", "resume")
    assert len(code) == 8 and set(code) <= set(ALPHABET)
    assert code == short_code(SECRET, "demo", "demo|abandoned_cart|c1|1", "resume")
    others = {short_code(SECRET, "demo", "demo|abandoned_cart|c1|1", "specialist"),
              short_code(SECRET, "demo", "demo|abandoned_cart|c1|2", "resume"),
              short_code(SECRET, "shop2", "demo|abandoned_cart|c1|1", "resume"),
              short_code("another-secret", "demo", "demo|abandoned_cart|c1|1", "resume")}
    assert code not in others and len(others) == 4


def test_short_url_drops_a_trailing_slash_of_the_base() -> None:
    assert short_url("https://wa.shop.de/", "Ab3dE9xZ") == "https://wa.shop.de/l/Ab3dE9xZ"


def test_utm_parameters_replace_the_targets_own_and_keep_its_other_parameters_and_fragment() -> None:
    tagged = with_utm("https://shop.example/c?a=1&utm_source=mail&b=2#top", campaign="abandoned_cart",
                      content="stage_1")
    assert tagged == ("https://shop.example/c?a=1&b=2&utm_source=whatsapp&utm_medium=message"
                      "&utm_campaign=abandoned_cart&utm_content=stage_1#top")
    assert with_utm("https://shop.example/", campaign="price_drop") == (
        "https://shop.example/?utm_source=whatsapp&utm_medium=message&utm_campaign=price_drop")


@pytest.mark.parametrize(("age", "valid"), [
    (timedelta(0), True), (timedelta(hours=23, minutes=59), True), (timedelta(hours=24), True),
    (timedelta(hours=24, seconds=1), False), (timedelta(hours=25), False),
])
def test_a_resume_token_holds_24_hours_from_its_signing(age: timedelta, valid: bool) -> None:
    token = sign_resume(SECRET, {"c": "cart-1", "u": "https://shop.example/checkout/1"}, NOW)
    if valid:
        assert read_resume(SECRET, token, NOW + age) == {"c": "cart-1", "u": "https://shop.example/checkout/1"}
    else:
        with pytest.raises(LinkExpired):
            read_resume(SECRET, token, NOW + age)


def test_a_token_signed_with_another_secret_or_changed_is_tampered() -> None:
    token = sign_resume(SECRET, {"c": "cart-1"}, NOW)
    with pytest.raises(LinkTampered):
        read_resume("another-secret", token, NOW)
    payload, stamp, signature = token.split(".")
    forged = sign_resume("another-secret", {"c": "cart-2"}, NOW).split(".")[0]
    for changed in (f"{forged}.{stamp}.{signature}", f"{payload}.{stamp}.{signature[:-1]}A", "garbage", ""):
        with pytest.raises(LinkTampered):
            read_resume(SECRET, changed, NOW)


def test_a_genuine_token_whose_payload_is_not_an_object_is_refused() -> None:
    with pytest.raises(LinkTampered):
        read_resume(SECRET, _serializer(SECRET, NOW).dumps(["not", "an", "object"]), NOW)


@given(st.text(max_size=200))
def test_no_text_crashes_the_token_reader(text: str) -> None:
    try:
        read_resume(SECRET, text, NOW)
    except (LinkTampered, LinkExpired):
        pass
