"""Issue 9 item 6: money per currency and locale (Babel), and parameters cleaned to what the Cloud API accepts
(CLOUD-API.md §2.4) while product names with emoji, RTL text or HTML stay intact — for the commerce flows too."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trigger_engine.domain.copy import money
from trigger_engine.domain.decide import evolve, on_timer
from trigger_engine.domain.decisions import Send
from trigger_engine.domain.parameters import ParameterRules, UnsendableParameters, clean_parameters
from trigger_engine.domain.price_drop import key_prefix
from trigger_engine.domain.timers import Timer

from .factories import T0, TENANT, config, profile
from .test_price_drop import SKU, cart_updated

RULES = ParameterRules()


@pytest.mark.parametrize(("amount", "currency", "locale", "text"), [
    (1234.5, "EUR", "de_DE", "1.234,50 €"),  # the three examples
    (1234.5, "EUR", "en_IE", "€1,234.50"),
    (12800, "JPY", "en_US", "¥12,800"),  # JPY has no decimals
    (12800.4, "JPY", "de_DE", "12.800 ¥"),
    (1234.5, "JPY", "en_US", "¥1,235"),  # rounded half up to whole yen
    (12.345, "KWD", "en_US", "KWD 12.345"),  # three decimals
    (12.3456, "KWD", "de_DE", "12,346 KWD"),
    (5, "KWD", "en_IE", "KWD 5.000"),
    (0.5, "EUR", "de_DE", "0,50 €"),
    (1_000_000, "EUR", "en_IE", "€1,000,000.00"),
])
def test_money_is_written_per_currency_and_locale(amount, currency, locale, text):
    assert money(amount, currency, locale) == text


@given(st.decimals(min_value=0, max_value=10**7, places=2), st.sampled_from(["de_DE", "en_IE", "en_US"]))
def test_euro_amounts_always_show_two_decimals_and_no_break_space(amount, locale):
    text = money(amount, "EUR", locale)
    digits = text.replace("€", "").strip()
    assert digits[-3] in ",." and digits[-2:].isdigit()
    assert "\u00a0" not in text and "\u202f" not in text


@pytest.mark.parametrize(("raw", "clean"), [
    ("Sneaker\nLimited", "Sneaker Limited"),  # newline
    ("Sneaker\tLimited", "Sneaker Limited"),  # tab
    ("Sneaker\r\n\r\nLimited", "Sneaker Limited"),
    ("a     b", "a b"),  # five spaces
    ("a" + " " * 12 + "b", "a b"),
    ("a\u00a0\u00a0\u00a0\u00a0\u00a0b", "a b"),  # no-break spaces are spaces to Meta too
    ("  padded  ", "padded"),
])
def test_newlines_tabs_and_runs_of_spaces_are_removed(raw, clean):
    assert clean_parameters((raw,), RULES) == (clean,)


@pytest.mark.parametrize("name", [
    "Kinderwagen 👶🏽 Deluxe",  # emoji with skin tone
    "👨‍👩‍👧 Family Pack",  # ZWJ sequence
    "🇩🇪 Trikot",  # flag
    "1️⃣ Angebot",  # keycap
    "سماعات لاسلكية",  # Arabic
    "مَرْحَبًا",  # Arabic with harakat
    "עגלת תינוק",  # Hebrew
    "שָׁלוֹם",  # Hebrew with niqqud
    "می‌خواهم",  # Persian with ZWNJ
    "<b>Bold &amp; Co</b>",  # HTML as the shop wrote it
    "Tom & Jerry <3",
    "Café Crème",
])
def test_emoji_rtl_and_html_product_names_stay_intact(name):
    assert clean_parameters((name, "€9.99"), RULES) == (name, "€9.99")


def test_a_direction_override_is_removed_but_the_rtl_text_stays():
    assert clean_parameters(("\u202eעגלת תינוק\u202c",), RULES) == ("עגלת תינוק",)


@pytest.mark.parametrize(("rules", "parameters", "limits"), [
    (ParameterRules(max_parameter_chars=20), ("x" * 100,), (20,)),  # one parameter's limit
    (ParameterRules(max_body_chars=200, template_text_chars=100), ("y" * 150, "https://s.example/l/abc"), (77, 23)),
])
def test_length_limits_cut_text_never_links(rules, parameters, limits):
    cleaned = clean_parameters(parameters, rules)
    assert tuple(len(p) for p in cleaned) == limits
    assert cleaned[0].endswith("…")
    assert all(c == p for c, p in zip(cleaned, parameters, strict=True) if p.startswith("https://"))
    assert sum(map(len, cleaned)) <= rules.max_body_chars - rules.template_text_chars


def test_a_long_emoji_name_is_cut_between_graphemes():
    (cut,) = clean_parameters(("👨‍👩‍👧" * 10,), ParameterRules(max_parameter_chars=12))
    assert cut.endswith("…") and cut[:-1] == "👨‍👩‍👧" * 2


def test_a_blank_parameter_is_refused():
    with pytest.raises(UnsendableParameters, match="parameter 2 is empty"):
        clean_parameters(("ok", " \n\t "), RULES)


@pytest.mark.parametrize("name", ["سماعات\nلاسلكية", "👶🏽 Kinder\twagen", "<b>Bold</b>     &amp;"])
def test_a_price_drop_for_a_messy_name_is_sendable_and_keeps_emoji_rtl_and_html(name):
    p = evolve(profile(), cart_updated(name=name))
    timer = Timer(TENANT, key_prefix(TENANT, "pc") + "cust-1", "price_drop", "cust-1", T0, "pc",
                  T0 + timedelta(hours=24), {"sku": SKU, "old_price": 100.0, "new_price": 80.0})
    send = on_timer(p, timer, T0, config())[0]
    assert isinstance(send, Send)
    shown = send.parameters[0]
    assert "\n" not in shown and "\t" not in shown and "     " not in shown
    assert shown == " ".join(name.split())
    assert send.parameters[1:3] == ("€80.00", "€100.00")
