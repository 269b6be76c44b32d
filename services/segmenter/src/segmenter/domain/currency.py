"""Spend across currencies (R-G5): exact amounts, converted to the tenant's base currency with dated FX rates.

Amounts are Decimals in their currency's ISO 4217 minor units (`scrm_common.money`: EUR 2, JPY 0,
KWD 3), never floats. A tenant's `CurrencySettings` name its base currency and, per other currency, how many
units of the base one unit of it is worth, as of a date. Spend in a currency without a rate is kept
apart (reported as unconverted) and never added to the base amount raw: one ¥12,800 order is about
78 EUR, not 12,800.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Annotated

from babel.numbers import is_currency
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from scrm_common.money import quantized

ZERO = Decimal(0)
MAX_RATES = 200


def _known(code: str) -> str:
    if not is_currency(code):
        raise ValueError(f"{code} is not an ISO 4217 currency code")
    return code


CurrencyCode = Annotated[str, Field(pattern=r"^[A-Z]{3}$"), AfterValidator(_known)]
Rate = Annotated[Decimal, Field(gt=0, le=Decimal("1e12"), allow_inf_nan=False)]


class CurrencySettings(BaseModel):
    """A tenant's base currency and FX rates (R-G5 spend is compared in the base currency).

    `rates[c]` = units of `base_currency` one unit of `c` is worth, as of `as_of` (e.g. base EUR,
    `{"JPY": "0.0061", "USD": "0.92"}`). The base currency's own rate is 1 and need not be listed.
    Raises pydantic.ValidationError for unknown codes, non-positive rates, a base rate other than 1,
    or rates without their date.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_currency: CurrencyCode = "EUR"
    rates: Annotated[dict[CurrencyCode, Rate], Field(max_length=MAX_RATES)] = {}
    as_of: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CurrencySettings:
        own = self.rates.get(self.base_currency)
        if own is not None and own != 1:
            raise ValueError(f"the base currency's own rate must be 1, not {own}")
        if self.rates and self.as_of is None:
            raise ValueError("FX rates need the date they are valid for (as_of)")
        return self

    def rate(self, currency: str) -> Decimal | None:
        """Units of the base currency per unit of `currency`; None when there is no rate for it."""
        if currency == self.base_currency:
            return Decimal(1)
        return self.rates.get(currency)


@dataclass(frozen=True, slots=True)
class Spend:
    """Spend in the base currency, plus what could not be converted, per currency (never added raw)."""

    currency: str
    converted: Decimal
    unconverted: dict[str, Decimal] = field(default_factory=dict)


def convert(amounts: Mapping[str, Decimal], settings: CurrencySettings) -> Spend:
    """Amounts per currency → their sum in the base currency (in its minor units) and the rest apart."""
    total = ZERO
    apart: dict[str, Decimal] = {}
    for currency, amount in sorted(amounts.items()):
        rate = settings.rate(currency)
        if rate is None:
            apart[currency] = quantized(amount, currency)
        else:
            total += amount * rate
    return Spend(currency=settings.base_currency, converted=quantized(total, settings.base_currency),
                 unconverted=apart)
