"""Money, dates, zones and links as the contact reads them (issue 5 §3)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trigger_engine.domain.copy import contact_zone, day, format_locale, local_day, minor_units, money, url_with


@pytest.mark.parametrize(("amount", "currency", "locale", "text"), [
    # the examples: no minor unit for JPY, three for KWD
    (12800, "JPY", "en_US", "¥12,800"),
    (12800, "JPY", "de", "12.800 ¥"),
    (12.345, "KWD", "en_US", "KWD 12.345"),
    (12.345, "KWD", "de", "12,345 KWD"),
    # the everyday currencies, as before
    (149.90, "EUR", "en_US", "€149.90"),
    (149.90, "EUR", "de", "149,90 €"),
    (1234.5, "EUR", "en_US", "€1,234.50"),
    (1234.5, "EUR", "de_DE", "1.234,50 €"),
    (0.0, "EUR", "de", "0,00 €"),
    (9.99, "USD", "en_US", "$9.99"),
    (9.99, "GBP", "de", "9,99 £"),
    (10.0, "CHF", "en_US", "CHF 10.00"),
    (10.0, "CHF", "de", "10,00 CHF"),
    (1234.5, "CHF", "de_CH", "CHF 1'234.50"),
    (5.0, "PLN", "en_US", "PLN 5.00"),
    (5.0, "PLN", "de", "5,00 PLN"),
    # other currencies with no, three or ISO-only minor units
    (15000, "KRW", "en_US", "₩15,000"),
    (15000, "KRW", "de", "15.000 ₩"),
    (99, "BHD", "en_US", "BHD 99.000"),
    (7.5, "OMR", "de", "7,500 OMR"),
    (1234.567, "IQD", "en_US", "IQD 1,234.567"),  # ISO 4217: 3 (CLDR would round to dinars)
    (1990.5, "HUF", "de", "1.990,50 HUF"),  # ISO 4217: 2 (CLDR would round to forints)
    (12800.5, "JPY", "en_US", "¥12,801"),  # rounded half up to whole yen
    (0.125, "EUR", "en_US", "€0.13"),
    (2.675, "USD", "en_US", "$2.68"),  # the float 2.675 is 2.67499…: taken as the decimal it was written as
    (Decimal("12.3456"), "KWD", "en_US", "KWD 12.346"),
    (1_000_000_000, "EUR", "de", "1.000.000.000,00 €"),
])
def test_money_uses_the_currencys_minor_units_and_the_locales_writing(amount, currency, locale, text):
    assert money(amount, currency, locale) == text


@pytest.mark.parametrize(("currency", "digits"), [
    ("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("ISK", 0), ("KWD", 3), ("BHD", 3), ("JOD", 3),
    ("TND", 3), ("IQD", 3), ("CLF", 4), ("HUF", 2), ("IDR", 2), ("COP", 2),
])
def test_minor_units_follow_iso_4217(currency, digits):
    assert minor_units(currency) == digits


@given(amount=st.decimals(min_value=0, max_value=10**9, places=3),
       currency=st.sampled_from(["EUR", "JPY", "KWD", "CHF", "IQD"]), locale=st.sampled_from(["en_US", "de"]))
def test_money_never_shows_more_or_fewer_digits_than_the_currency_has(amount, currency, locale):
    text = money(amount, currency, locale)
    separator = "." if locale == "en_US" else ","
    digits = minor_units(currency)
    number = "".join(ch for ch in text if ch.isdigit() or ch in ".,")
    fraction = number.rsplit(separator, 1)[1] if digits else ""
    assert len(fraction) == digits, text
    assert "\u00a0" not in text and "  " not in text


@pytest.mark.parametrize(("locale", "language", "chosen"), [
    ("de-DE", "de", "de_DE"), ("de-CH", "de", "de_CH"), ("de-AT", "de", "de_AT"), ("de", "de", "de"),
    ("en-GB", "en_US", "en_GB"), ("en-US", "en_US", "en_US"),
    (None, "en_US", "en_US"), (None, "de", "de"),
    ("fr-FR", "en_US", "en_US"),  # a French contact reading the English template: English conventions
    ("pt-BR", "de", "de"),
    ("xx-YY", "de", "de"),  # not a locale Babel knows
])
def test_format_locale_is_the_contacts_when_it_speaks_the_templates_language(locale, language, chosen):
    assert format_locale(locale, language) == chosen


@pytest.mark.parametrize(("locale", "text"), [
    ("de", "08.03.2026"), ("de_DE", "08.03.2026"), ("de_CH", "08.03.2026"),
    ("en_US", "Mar 8, 2026"), ("en_GB", "8 Mar 2026"), ("en", "Mar 8, 2026"),
])
def test_day_is_written_unambiguously_in_the_locale(locale, text):
    assert day(date(2026, 3, 8), locale) == text


@pytest.mark.parametrize(("timezone", "phone", "wa_id", "zone"), [
    ("Pacific/Auckland", "+4915112345678", None, "Pacific/Auckland"),  # their own zone wins
    (None, "+64211234567", None, "Pacific/Auckland"),  # else the number's country
    (None, "+4915112345678", None, "Europe/Berlin"),
    (None, "+525512345678", None, "America/Mexico_City"),
    (None, None, "5215512345678", "America/Mexico_City"),  # a wa_id the phone library rejects as given
    (None, None, "551199998888", "America/Sao_Paulo"),
    (None, None, None, "UTC"),
    ("Not/AZone", None, None, "UTC"),
    ("Europe", "+4915112345678", None, "Europe/Berlin"),  # a tzdata directory is no zone: the number's
    ("America/Argentina", None, None, "UTC"),
])
def test_contact_zone_is_their_own_else_their_numbers_else_utc(timezone, phone, wa_id, zone):
    assert contact_zone(timezone, phone, wa_id) == ZoneInfo(zone)


@pytest.mark.parametrize("written", ["2026-03-01T12:30:00Z", "2026-03-02T01:30:00+13:00", "2026-03-01T07:30:00-05:00"])
def test_the_local_day_of_an_instant_does_not_depend_on_the_offset_it_was_written_with(written):
    instant = datetime.fromisoformat(written)
    assert local_day(instant, ZoneInfo("Pacific/Auckland")) == date(2026, 3, 2)
    assert local_day(instant, ZoneInfo("UTC")) == date(2026, 3, 1)
    assert local_day(instant, ZoneInfo("America/Los_Angeles")) == date(2026, 3, 1)


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)),
       st.integers(min_value=-12 * 60, max_value=14 * 60))
def test_local_day_is_the_same_for_every_offset_of_one_instant(instant, offset_minutes):
    from datetime import timezone

    rewritten = instant.astimezone(timezone(timedelta(minutes=offset_minutes)))
    zone = ZoneInfo("Pacific/Auckland")
    assert local_day(rewritten, zone) == local_day(instant, zone)


@pytest.mark.parametrize(("order_id", "url"), [
    ("#1001", "https://shop.example/t/%231001"),
    ("SO 1001/B", "https://shop.example/t/SO%201001%2FB"),
    ("A-1001", "https://shop.example/t/A-1001"),
    ("a?b=c&d", "https://shop.example/t/a%3Fb%3Dc%26d"),
    ("Ö-7", "https://shop.example/t/%C3%96-7"),
])
def test_url_variables_are_url_encoded(order_id, url):
    assert url_with("https://shop.example/t/{order_id}", order_id=order_id) == url


@pytest.mark.parametrize(("template", "url"), [
    ("https://shop.example/t/{order_id}?x={{literal}}", "https://shop.example/t/A%201?x={literal}"),
    ("https://shop.example/{order_id}/{order_id}", "https://shop.example/A%201/A%201"),
    ("https://shop.example/help", "https://shop.example/help"),
])
def test_url_with_substitutes_the_value_as_text_and_braces_are_doubled(template, url):
    assert url_with(template, order_id="A 1") == url


@pytest.mark.parametrize("template", [
    "https://x/{order_id:d}", "https://x/{order_id!r}", "https://x/{order_id:>999999999999}",
    "https://x/{order_id:{order_id}}", "https://x/{order_id.__class__}", "https://x/{0}", "https://x/{}",
])
def test_url_with_never_formats_a_field_it_refuses_it(template):
    with pytest.raises(ValueError, match="not a bare placeholder"):
        url_with(template, order_id="A58B2C")  # never a str.format width: no giant string, no format error


def test_url_variables_are_encoded_in_a_query_too():
    assert url_with("https://shop.example/track?order={order_id}&lang=de", order_id="#1 2") \
        == "https://shop.example/track?order=%231%202&lang=de"
