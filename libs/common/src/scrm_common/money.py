"""Money every service must read alike: a currency's ISO 4217 minor units and exact Decimal amounts.

What belongs here: facts about currencies and amounts that two services would otherwise each decide
(the segmenter's spend, reporting's revenue and the trigger-engine's message copy must agree that KWD
has three decimals and JPY none), built on Babel's CLDR data. What does not: formatting for people
(by locale, in the trigger-engine's copy), FX rates and value tiers (the segmenter's), or any other
business rule.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import get_currency_precision

# ISO 4217 minor units of the currencies for which CLDR (Babel's data) says otherwise: CLDR shows no
# minor unit where the coins are out of everyday use. An order amount keeps ISO's digits, so the
# customer reads what the shop charged and reports keep what was paid, never a rounded figure. Every
# other currency: Babel's digits, which are ISO's (JPY 0, EUR 2, KWD/BHD/JOD/OMR/TND/LYD 3, CLF/UYW 4).
ISO_4217_MINOR_UNITS: dict[str, int] = {
    "AFN": 2, "ALL": 2, "COP": 2, "HUF": 2, "IDR": 2, "IQD": 3, "IRR": 2, "KPW": 2, "LAK": 2, "LBP": 2,
    "MGA": 2, "MMK": 2, "SLL": 2, "SOS": 2, "SYP": 2, "YER": 2,
}


def minor_units(currency: str) -> int:
    """Digits after the decimal point for `currency` per ISO 4217: EUR 2, JPY 0, KWD 3, IQD 3; unknown codes 2."""
    return ISO_4217_MINOR_UNITS.get(currency, int(get_currency_precision(currency)))


def quantized(amount: Decimal, currency: str) -> Decimal:
    """`amount` with exactly `currency`'s minor units, rounded half-up when it has more (EUR 10.005 → 10.01)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)


def exact_amount(amount: float | Decimal | str, currency: str | None) -> Decimal:
    """A contract amount (a JSON number, parsed as a float) as the exact decimal it was written.

    `Decimal(str(x))` recovers the written digits (149.9 → 149.90, not 149.900000000000005684…),
    quantized to `currency`'s minor units when the currency is known (JPY 12800.0 → 12800,
    KWD 12.345 → 12.345), as written when it is None (a return whose order is not known yet).
    Raises decimal.InvalidOperation for text that is no number.
    """
    value = Decimal(str(amount))
    return quantized(value, currency) if currency else value
