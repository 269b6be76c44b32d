"""Settings of the trigger-engine."""

from __future__ import annotations

from pydantic import Field, ValidationError, model_validator

from scrm_common.settings import CommonSettings
from trigger_engine.configuration import Bootstrap
from trigger_engine.domain.settings import TenantSettings


class Settings(CommonSettings):
    """Trigger-engine: consumer, outbox relay, timer loop, and the installation's defaults of every tenant's settings.

    `SCRM_SHOP_TRACKING_URL`, `SCRM_SHOP_SUPPORT_URL`, `SCRM_SHOP_HOME_REGION`, `SCRM_DEFAULT_LANGUAGE` are the
    defaults of each tenant's settings (`GET|PATCH /v1/settings` changes them per tenant); the bootstrap
    tenant sends from `SCRM_BOOTSTRAP_PHONE_NUMBER_ID` until the sender's first `account.registered` for it.
    `SCRM_SENDER_URL` is where a change of flow or tenant settings asks the sender for the templates it names.
    """

    trigger_engine_port: int = 8081
    bootstrap_tenant: str = "demo"
    bootstrap_phone_number_id: str = "100000000000001"
    shop_tracking_url: str = "https://shop.example/t/{order_id}"
    shop_support_url: str = "https://shop.example/help"
    shop_home_region: str = "DE"
    shop_time_zone: str = "Europe/Berlin"
    default_language: str = "en_US"
    # The sender: its template catalog (R-S2 checks of flow settings) and its send log (the contact's story).
    sender_url: str = "http://127.0.0.1:8082"
    relay_batch_size: int = Field(default=1000, ge=1)
    relay_poll_seconds: float = Field(default=0.1, gt=0)
    # The timer loop (trigger_engine.timers): due timers claimed per pass (one transaction), and how often an idle
    # loop looks for due timers (seconds; a batch that schedules something due now wakes it at once).
    timer_batch_size: int = Field(default=500, ge=1, le=10_000)
    timer_poll_seconds: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _valid_tenant_defaults(self) -> Settings:
        try:
            self.tenant_defaults()
        except ValidationError as exc:
            faults = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"the installation's default tenant settings are invalid: {faults}") from None
        return self

    def tenant_defaults(self) -> TenantSettings:
        """Every tenant's settings before it changes them; raises pydantic.ValidationError naming the bad value."""
        return TenantSettings(tracking_url=self.shop_tracking_url, support_url=self.shop_support_url,
                              home_region=self.shop_home_region, time_zone=self.shop_time_zone,
                              default_language=self.default_language)

    def bootstrap(self) -> Bootstrap:
        """The bootstrap tenant and its account until the engine learns the tenant's accounts."""
        return Bootstrap(self.bootstrap_tenant, self.bootstrap_phone_number_id or None)
