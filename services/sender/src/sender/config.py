"""Settings of the sender."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from pydantic import AwareDatetime, Field, SecretStr, field_validator, model_validator

from scrm_common.settings import CommonSettings
from sender.adapters.secrets import parse_keys


class Settings(CommonSettings):
    """Sender: command consumer, dispatcher, WhatsApp Cloud API client, accounts.

    Secrets (`SCRM_SECRETS_KEY`, `SCRM_BOOTSTRAP_ACCESS_TOKEN`) are `SecretStr` and a refused setting's
    error never echoes the values given.
    """

    sender_port: int = 8082
    whatsapp_base_url: str = "http://127.0.0.1:8089"
    whatsapp_api_version: str = "v25.0"
    whatsapp_timeout_seconds: float = Field(default=10.0, gt=0)
    # Requests in flight per sender instance. httpcore scans every pooled connection per request, so a
    # few busy keep-alive connections beat many idle ones; raise it for a high-latency provider.
    whatsapp_max_connections: int = Field(default=16, ge=1)
    bootstrap_tenant: str = "demo"
    bootstrap_phone_number_id: str = "100000000000001"
    bootstrap_access_token: SecretStr = SecretStr("sim-token")
    # The bootstrap number's WhatsApp Business Account (SCRM_BOOTSTRAP_WABA_ID, as ingest reads it): an
    # `account.updated` naming only the WABA reaches the accounts stored with it.
    bootstrap_waba_id: str | None = "200000000000001"
    # The bootstrap account's throughput tier (80 or 1000 messages/s, CLOUD-API §6.2); set when it is created.
    bootstrap_throughput_per_second: float = Field(default=80.0, gt=0)
    # When the bootstrap number was registered with WhatsApp (SCRM_BOOTSTRAP_REGISTERED_AT, an ISO date or
    # time): R-S3 new-account protection counts from it. Unset: when the account is first added. Read only
    # when the account is created; a later start never changes it (PATCH /v1/accounts/{id} does).
    bootstrap_registered_at: AwareDatetime | date | None = None
    # Fernet keys for access tokens at rest (SCRM_SECRETS_KEY, comma-separated: the first encrypts, all
    # decrypt; see `adapters.secrets` for rotating). Empty: a fixed development key (refused in prod).
    secrets_key: SecretStr = SecretStr("")

    @field_validator("bootstrap_registered_at", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value
    dispatch_batch_size: int = Field(default=200, ge=1)
    dispatch_poll_seconds: float = Field(default=0.05, gt=0)
    # Marketing messages of one account the send gate decides on per dispatch pass, oldest first: the pass's
    # work stays bounded whatever the backlog (R-S3 lets at most one go per 3–5 s anyway).
    dispatch_gate_batch_size: int = Field(default=50, ge=1)
    # How long a "sending" row waits for the provider's own evidence (a status webhook) before resending.
    doubt_timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    # R-S7: how long a number marked invalid stays left out of later sends (SCRM_SENDER_INVALID_NUMBER_TTL_DAYS).
    sender_invalid_number_ttl_days: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _secrets_key(self) -> Settings:
        parse_keys(self.secrets_key.get_secret_value())  # a malformed key is refused in every environment
        if self.env == "prod" and not self.secrets_key.get_secret_value().strip():
            raise ValueError("SCRM_SECRETS_KEY must be set in prod (Fernet keys, comma-separated; the first "
                             "encrypts the WhatsApp access tokens at rest)")
        if self.bootstrap_throughput_per_second not in (80, 1000):
            raise ValueError("SCRM_BOOTSTRAP_THROUGHPUT_PER_SECOND must be 80 or 1000 (the Cloud API's tiers)")
        return self

    def bootstrap_registered(self, now: datetime) -> datetime:
        """When the bootstrap number was registered: SCRM_BOOTSTRAP_REGISTERED_AT (a date is its UTC
        midnight), else `now`."""
        value = self.bootstrap_registered_at
        if value is None:
            return now
        if isinstance(value, datetime):
            return value
        return datetime.combine(value, time(), tzinfo=UTC)
