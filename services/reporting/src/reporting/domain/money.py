"""Exact money: a contract amount as a Decimal in its currency's ISO 4217 minor units, never a float."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import get_currency_precision


def minor_units(currency: str) -> int:
    """Decimals of `currency` per ISO 4217 (Babel's table): EUR 2, JPY 0, KWD 3; unknown codes 2."""
    return int(get_currency_precision(currency))


def exact_amount(amount: float | Decimal | str, currency: str) -> Decimal:
    """`amount` as the exact decimal it was written, in `currency`'s minor units.

    Events carry amounts as JSON numbers, parsed as floats: `Decimal(str(x))` recovers the written
    digits (149.9 → 149.90, not 149.900000000000005684…). More decimals than the currency has are
    rounded half-up (EUR 10.005 → 10.01); JPY 12800.0 → 12800, KWD 12.345 → 12.345.
    """
    return quantized(Decimal(str(amount)), currency)


def quantized(amount: Decimal, currency: str) -> Decimal:
    """`amount` with exactly `currency`'s minor units (half-up when it has more)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP)
