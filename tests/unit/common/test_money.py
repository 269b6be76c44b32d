"""scrm_common.money: ISO 4217 minor units (Babel's CLDR data, ISO where CLDR differs) and exact amounts."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import pytest
from babel.numbers import get_currency_precision

from scrm_common.money import ISO_4217_MINOR_UNITS, exact_amount, minor_units, quantized


@pytest.mark.parametrize(("currency", "digits"), [
    ("EUR", 2), ("USD", 2), ("JPY", 0), ("KRW", 0), ("CLP", 0), ("KWD", 3), ("BHD", 3), ("JOD", 3),
    ("OMR", 3), ("TND", 3), ("LYD", 3), ("CLF", 4), ("UYW", 4),
    # CLDR shows no decimals where the coins are out of use; ISO 4217 keeps them
    ("IQD", 3), ("HUF", 2), ("COP", 2), ("IDR", 2), ("LBP", 2),
    ("XYZ", 2),  # a code nobody knows: two, as Babel says
])
def test_minor_units_follow_iso_4217(currency, digits):
    assert minor_units(currency) == digits


def test_the_overrides_are_only_where_cldr_and_iso_differ():
    assert all(get_currency_precision(code) != digits for code, digits in ISO_4217_MINOR_UNITS.items())


@pytest.mark.parametrize(("amount", "currency", "exact"), [
    (149.9, "EUR", "149.90"),
    (0.1 + 0.2, "EUR", "0.30"),  # 0.30000000000000004 as a float
    (10.005, "EUR", "10.01"),  # more decimals than the currency has: half-up
    (12800.0, "JPY", "12800"),
    (12800, "JPY", "12800"),
    (12.345, "KWD", "12.345"),
    (0.001, "BHD", "0.001"),
    (1500.5, "IQD", "1500.500"),
    (25000, "HUF", "25000.00"),
    ("19.99", "USD", "19.99"),
    (Decimal("7.5"), "CHF", "7.50"),
    (1e9, "USD", "1000000000.00"),
    (12.3456, None, "12.3456"),  # currency not known yet: as written
])
def test_amounts_are_the_exact_decimal_written_in_the_currencys_minor_units(amount, currency, exact):
    got = exact_amount(amount, currency)
    assert isinstance(got, Decimal)
    assert str(got) == exact


@pytest.mark.parametrize(("amount", "currency", "exact"), [
    (Decimal("99.5"), "EUR", "99.50"), (Decimal("12800.0"), "JPY", "12800"), (Decimal("12.3455"), "KWD", "12.346"),
])
def test_quantized_keeps_exactly_the_currencys_digits(amount, currency, exact):
    assert str(quantized(amount, currency)) == exact


def test_text_that_is_no_number_is_refused():
    with pytest.raises(InvalidOperation):
        exact_amount("12,50", "EUR")
