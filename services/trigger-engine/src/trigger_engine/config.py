"""Settings of the trigger-engine."""

from __future__ import annotations

from pydantic import Field

from scrm_common.settings import CommonSettings
from trigger_engine.domain.model import EngineConfig, OrderConfirmationConfig


class Settings(CommonSettings):
    """Trigger-engine: consumer, outbox relay, flow defaults."""

    trigger_engine_port: int = 8081
    bootstrap_tenant: str = "demo"
    bootstrap_phone_number_id: str = "100000000000001"
    shop_tracking_url: str = "https://shop.example/t/{order_id}"
    shop_support_url: str = "https://shop.example/help"
    shop_home_region: str = "DE"
    default_language: str = "en_US"
    relay_batch_size: int = Field(default=1000, ge=1)
    relay_poll_seconds: float = Field(default=0.1, gt=0)

    def engine_config(self, tenant: str) -> EngineConfig:
        """The flow configuration of a tenant: the installation's defaults; the bootstrap tenant sends from
        the bootstrap account, other tenants until their account is configured from nothing."""
        return EngineConfig(
            tenant=tenant,
            account_id=self.bootstrap_phone_number_id if tenant == self.bootstrap_tenant else None,
            default_language=self.default_language,
            order_confirmation=OrderConfirmationConfig(
                tracking_url=self.shop_tracking_url, support_url=self.shop_support_url,
                home_region=self.shop_home_region),
        )
