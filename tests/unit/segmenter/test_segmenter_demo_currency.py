"""The demo's value tiers work: the dev stack and docker-compose give the segmenter FX rates for every
currency the demo shop sells in, the segmenter accepts them, and a non-EUR customer's spend is converted."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from segmenter_factories import T0, paid

from demo_shop.catalog import COUNTRIES
from scrm_stack.stack import DEMO_CURRENCY_ENV, Stack, StackConfig
from segmenter.config import Settings
from segmenter.domain.currency import CurrencySettings
from segmenter.domain.features import ContactFeatures, evolve
from segmenter.domain.policy import SegmentPolicy
from segmenter.domain.tiers import ValueTier, lifetime_spend, value_tier

COMPOSE = Path(__file__).resolve().parents[3] / "docker-compose.yml"
SHOP_CURRENCIES = sorted({c.currency for c in COUNTRIES})


@pytest.fixture
def demo_fx(monkeypatch: pytest.MonkeyPatch) -> CurrencySettings:
    """The segmenter's default currency settings read from the environment the dev stack gives it."""
    for var, value in DEMO_CURRENCY_ENV.items():
        monkeypatch.setenv(var, value)
    return Settings().default_currency


def test_the_demo_rates_cover_every_currency_the_demo_shop_sells_in(demo_fx):
    fx = demo_fx
    assert fx.as_of is not None
    assert [c for c in SHOP_CURRENCIES if fx.rate(c) is None] == []


def test_docker_compose_gives_the_segmenter_the_same_demo_rates():
    env = yaml.safe_load(COMPOSE.read_text())["services"]["segmenter"]["environment"]
    assert {k: env[k] for k in DEMO_CURRENCY_ENV} == {
        **DEMO_CURRENCY_ENV, "SCRM_SEGMENTER_FX_RATES": env["SCRM_SEGMENTER_FX_RATES"]}
    assert json.loads(env["SCRM_SEGMENTER_FX_RATES"]) == json.loads(DEMO_CURRENCY_ENV["SCRM_SEGMENTER_FX_RATES"])


@pytest.mark.parametrize(("operator", "expected"), [
    ({}, DEMO_CURRENCY_ENV),
    ({"SCRM_SEGMENTER_BASE_CURRENCY": "USD"}, {"SCRM_SEGMENTER_BASE_CURRENCY": "USD"}),  # never mixed with ours
    ({"SCRM_SEGMENTER_FX_RATES": "{}"}, {"SCRM_SEGMENTER_FX_RATES": "{}"}),
], ids=["defaults", "own-base", "own-rates"])
def test_the_dev_stack_sets_the_demo_rates_only_when_the_operator_sets_none(tmp_path, operator, expected):
    stack = Stack(StackConfig.from_env(tmp_path, env=operator))
    env = stack.service_env()
    assert {k: env[k] for k in DEMO_CURRENCY_ENV if k in env} == expected


@pytest.mark.parametrize(("currency", "amount", "tier"), [
    ("USD", 6000.0, ValueTier.HIGH),  # ≈ 5520 EUR
    ("GBP", 900.0, ValueTier.MID),  # ≈ 1053 EUR
    ("CHF", 900.0, ValueTier.LOW),  # ≈ 963 EUR
    ("EUR", 5001.0, ValueTier.HIGH),
])
def test_a_demo_customers_spend_is_converted_to_eur_for_the_tier(demo_fx, currency, amount, tier):
    fx = demo_fx
    features = evolve(ContactFeatures(), paid("o1", amount, currency=currency, at=T0))
    spend = lifetime_spend(features, fx)
    assert spend.unconverted == {}
    assert spend.converted == (Decimal(str(amount)) * fx.rate(currency)).quantize(Decimal("0.01"))
    assert value_tier(features, T0, SegmentPolicy(), fx) is tier
