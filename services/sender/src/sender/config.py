"""Settings of the sender."""

from __future__ import annotations

from pydantic import Field

from scrm_common.settings import CommonSettings


class Settings(CommonSettings):
    """Sender: command consumer, dispatcher, WhatsApp Cloud API client."""

    sender_port: int = 8082
    whatsapp_base_url: str = "http://127.0.0.1:8089"
    whatsapp_api_version: str = "v25.0"
    whatsapp_timeout_seconds: float = Field(default=10.0, gt=0)
    # Requests in flight per sender instance. httpcore scans every pooled connection per request, so a
    # few busy keep-alive connections beat many idle ones; raise it for a high-latency provider.
    whatsapp_max_connections: int = Field(default=16, ge=1)
    bootstrap_tenant: str = "demo"
    bootstrap_phone_number_id: str = "100000000000001"
    bootstrap_access_token: str = "sim-token"
    # The bootstrap number's WhatsApp Business Account (SCRM_BOOTSTRAP_WABA_ID, as ingest reads it): an
    # `account.updated` naming only the WABA reaches the accounts stored with it.
    bootstrap_waba_id: str | None = "200000000000001"
    bootstrap_throughput_per_second: float = Field(default=80.0, gt=0)
    bootstrap_account_age_days: int = Field(default=30, ge=0)
    dispatch_batch_size: int = Field(default=200, ge=1)
    dispatch_poll_seconds: float = Field(default=0.05, gt=0)
    # How long a "sending" row waits for the provider's own evidence (a status webhook) before resending.
    doubt_timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    # R-S7: how long a number marked invalid stays left out of later sends (SCRM_SENDER_INVALID_NUMBER_TTL_DAYS).
    sender_invalid_number_ttl_days: float = Field(default=30.0, gt=0)
    # R-S2: how long a message of a paused template waits for it to be un-paused before it fails
    # (SCRM_SENDER_TEMPLATE_HOLD_HOURS).
    sender_template_hold_hours: float = Field(default=24.0, gt=0)
