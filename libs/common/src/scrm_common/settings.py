"""Settings every service shares (environment variables with the `SCRM_` prefix)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values no production secret may have: empty, or one of the dev defaults below.
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "dev-secret", "secret", "dev-internal-token",
                                 "dev-admin-token"})


class CommonSettings(BaseSettings):
    """What every service needs to reach the broker and the database and to behave on failure.

    A refused configuration never shows the values it was given (`hide_input_in_errors`): pydantic would
    otherwise print the whole environment it read, secrets included, in the start failure. Tokens are
    stripped of surrounding whitespace (a Kubernetes secret mounted from a file ends with a newline).
    """

    model_config = SettingsConfigDict(env_prefix="SCRM_", extra="ignore", frozen=True, hide_input_in_errors=True)

    env: Literal["dev", "test", "prod"] = "dev"
    log_level: str = "INFO"
    kafka_bootstrap: str = "127.0.0.1:9092"
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/scrm"
    database_pool_size: int = Field(default=10, ge=1, le=200)
    topic_partitions: int = Field(default=12, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    consumer_max_records: int = Field(default=500, ge=1)
    consumer_max_tries: int = Field(default=5, ge=1)
    retry_base_seconds: float = Field(default=0.2, gt=0)
    retry_max_seconds: float = Field(default=10.0, gt=0)
    producer_linger_ms: int = Field(default=5, ge=0)
    ingest_url: str = "http://127.0.0.1:8080"
    # Where the HTTP server listens (read by `runtime.serve`): loopback on the embedded stack, 0.0.0.0 in containers.
    bind_host: str = "127.0.0.1"
    # The token services present to ingest's key introspection (header X-Scrm-Internal-Token); the same
    # value on every service of an installation. `SCRM_ENV=prod` refuses the dev default.
    internal_token: str = "dev-internal-token"
    # How long a service trusts an introspected key (seconds): a revoked key or a disabled tenant stops
    # working everywhere within this bound.
    key_cache_seconds: float = Field(default=10.0, ge=0, le=30)
    # Short links (R-T6.5, R-R4): the key that makes link codes unguessable and signs one-click resume tokens
    # (the same value on the trigger-engine, which mints links, and ingest, which answers them; `SCRM_ENV=prod`
    # refuses the dev default), and the public base URL links are written with — ingest's address as customers
    # reach it (`https://wa.shop.de`: at most 19 characters keeps every link within 30). Empty: `SCRM_INGEST_URL`.
    link_secret: str = "dev-link-secret"
    public_base_url: str = ""

    @property
    def link_base_url(self) -> str:
        """The base URL short links are written with: `SCRM_PUBLIC_BASE_URL`, else ingest's URL."""
        return (self.public_base_url or self.ingest_url).rstrip("/")

    @field_validator("internal_token", "link_secret", mode="after")
    @classmethod
    def _stripped(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _no_placeholder_internal_token_in_prod(self) -> CommonSettings:
        if self.env == "prod" and self.internal_token in PLACEHOLDER_SECRETS:
            raise ValueError("SCRM_INTERNAL_TOKEN must be set to a random value (the same on every service) in prod")
        if self.env == "prod" and self.link_secret in PLACEHOLDER_SECRETS | {"dev-link-secret"}:
            raise ValueError("SCRM_LINK_SECRET must be set to a random value (the same on every service) in prod")
        return self
