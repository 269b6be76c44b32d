"""The flows a tenant configures, by name: a later flow is one module (its settings model beside its `decide`)
and one row here; the settings API and the engine's configuration read this table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache

from trigger_engine.domain import abandoned_cart, anti_fraud, order_confirmation, price_drop, shipment, welcome
from trigger_engine.domain.model import EngineConfig, LinkKeys
from trigger_engine.domain.settings import FlowSettings, TenantSettings

FLOWS: dict[str, type[FlowSettings]] = {
    welcome.FLOW: welcome.WelcomeSettings,  # R-T1
    order_confirmation.FLOW: order_confirmation.OrderConfirmationSettings,  # R-T2
    anti_fraud.FLOW: anti_fraud.AntiFraudSettings,  # R-T2.5
    shipment.FLOW: shipment.ShipmentSettings,  # R-T3
    abandoned_cart.FLOW: abandoned_cart.AbandonedCartSettings,  # R-T6
    price_drop.FLOW: price_drop.PriceDropSettings,  # R-T6.2
}


def engine_config(tenant: str, settings: TenantSettings, flows: Mapping[str, FlowSettings],
                  accounts: Sequence[str] | None, links: LinkKeys | None = None) -> EngineConfig:
    """A tenant's configuration for deciding: every registered flow's settings (the defaults where `flows`
    has none), and its accounts — `accounts` in the order they were registered, None when not known.

    `links`: the installation's short-link keys (None: the dev defaults).
    The default account is `settings.default_account_id` when the tenant owns it, else its earliest
    registered account still present (None: no account, and flows suppress with that reason).
    """
    owned = frozenset(accounts) if accounts is not None else None
    if settings.default_account_id is not None and (owned is None or settings.default_account_id in owned):
        default: str | None = settings.default_account_id
    else:
        default = accounts[0] if accounts else None
    every = {name: found if isinstance(found := flows.get(name), kind) else _defaults(kind)
             for name, kind in FLOWS.items()}
    return EngineConfig(tenant=tenant, account_id=default, settings=settings, flows=every, accounts=owned,
                        links=links or LinkKeys())


@cache
def _defaults(kind: type[FlowSettings]) -> FlowSettings:
    """The default settings of a flow model, built once (models are frozen)."""
    return kind()
