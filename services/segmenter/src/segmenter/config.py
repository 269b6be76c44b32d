"""Settings of the segmenter: the shared ones plus its port, its policy, currencies and the refresh cadence."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from pydantic import Field, model_validator

from scrm_common.settings import CommonSettings
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.policy import SegmentPolicy


class Settings(CommonSettings):
    """The segmenter's environment (prefix `SCRM_`).

    - `SCRM_SEGMENTER_PORT` (8083), `SCRM_SEGMENT_POLICY` (JSON of SegmentPolicy fields).
    - `SCRM_SEGMENTER_REFRESH_INTERVAL_SECONDS` (30), `SCRM_SEGMENTER_REFRESH_BATCH` (500): R-G10 decay.
    - Default currency settings of every tenant that has not stored its own (`PUT /v1/settings/currency`),
      used for R-G5 value tiers:
      - `SCRM_SEGMENTER_BASE_CURRENCY` — ISO 4217 code spend is compared in (default `EUR`);
      - `SCRM_SEGMENTER_FX_RATES` — JSON object currency → units of the base currency per unit, e.g.
        `{"JPY": "0.0061", "USD": "0.92", "KWD": "2.98"}` (default `{}`: spend in other currencies is
        kept apart as unconverted, never added raw);
      - `SCRM_SEGMENTER_FX_AS_OF` — the date those rates are valid for, `YYYY-MM-DD` (required with rates).
      Bad codes, non-positive rates or rates without a date stop the service at start.
    """

    segmenter_port: int = Field(default=8083, ge=1, le=65535)
    segment_policy: SegmentPolicy = SegmentPolicy()
    segmenter_refresh_interval_seconds: float = Field(default=30.0, gt=0)
    segmenter_refresh_batch: int = Field(default=500, ge=1)
    segmenter_base_currency: str = "EUR"
    segmenter_fx_rates: dict[str, Decimal] = {}
    segmenter_fx_as_of: date | None = None

    @model_validator(mode="after")
    def _currency_valid(self) -> Settings:
        self.default_currency  # noqa: B018 - raises ValueError (a start-up error) when invalid
        return self

    @property
    def default_currency(self) -> CurrencySettings:
        """The tenants' default base currency and FX rates."""
        return CurrencySettings(base_currency=self.segmenter_base_currency, rates=self.segmenter_fx_rates,
                                as_of=self.segmenter_fx_as_of)
