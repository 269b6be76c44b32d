"""Demo shop settings (environment variables with the `SCRM_` prefix)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_INGEST_URL = "http://127.0.0.1:8080"


class Settings(BaseSettings):
    """Where to post, with which key, how fast and from which seed."""

    model_config = SettingsConfigDict(env_prefix="SCRM_", extra="ignore", frozen=True)

    ingest_url: str = ""  # empty: http://127.0.0.1:{SCRM_INGEST_PORT or 8080}
    ingest_port: int | None = Field(default=None, ge=1, le=65535)
    bootstrap_api_key: str = Field(min_length=1)
    bootstrap_phone_number_id: str = "100000000000001"
    demo_rate: float = Field(default=5.0, gt=0, le=10_000)
    demo_seed: int | None = None
    demo_batch: int = Field(default=100, ge=1, le=1000)
    demo_report_seconds: float = Field(default=5.0, gt=0)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _resolve_url(self) -> Settings:
        if not self.ingest_url:
            url = f"http://127.0.0.1:{self.ingest_port}" if self.ingest_port else DEFAULT_INGEST_URL
            object.__setattr__(self, "ingest_url", url)
        object.__setattr__(self, "ingest_url", self.ingest_url.rstrip("/"))
        return self
