"""Settings every service shares (environment variables with the `SCRM_` prefix)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """What every service needs to reach the broker and the database and to behave on failure."""

    model_config = SettingsConfigDict(env_prefix="SCRM_", extra="ignore", frozen=True)

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
