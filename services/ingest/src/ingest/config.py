"""Settings of the ingest service."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from ingest.domain.links import DEFAULT_PREVIEW_AGENTS, LinkRules
from ingest.domain.tenants import tenant_id_problem
from scrm_common.links import RESUME_MAX_AGE_SECONDS
from scrm_common.settings import PLACEHOLDER_SECRETS, CommonSettings

_PLACEHOLDERS = {"", "changeme", "dev-secret", "secret"}


class Settings(CommonSettings):
    """Ingest: HTTP intake of shop events and Meta webhooks."""

    ingest_port: int = 8080
    whatsapp_app_secret: str = "dev-secret"
    whatsapp_verify_token: str = "dev-verify-token"
    # The installation operator's token (SCRM_ADMIN_TOKEN): `Authorization: Bearer <it>` on `/v1/admin/…`
    # (tenants and their keys). `SCRM_ENV=prod` refuses a missing or placeholder one.
    admin_token: str = "dev-admin-token"
    bootstrap_tenant: str = "demo"
    bootstrap_api_key: str | None = None
    bootstrap_phone_number_id: str = "100000000000001"
    # The WhatsApp Business Account of that number (SCRM_BOOTSTRAP_WABA_ID): template and account
    # webhooks name only the WABA. The default is the simulator's (SCRM_SIMULATOR_WABA_ID).
    bootstrap_waba_id: str | None = "200000000000001"
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_webhook_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_batch_events: int = Field(default=1000, ge=1)
    # One event must fit one Kafka request (1 MiB by default) with its key and headers.
    max_event_bytes: int = Field(default=900_000, ge=1024)
    ingest_rate_per_second: float = Field(default=5000.0, gt=0)
    ingest_burst: float = Field(default=10000.0, gt=0)
    # Short links (`GET /l/{code}`, `GET /r/{token}`, R-T6.5, R-R4); see `ingest.domain.links.LinkRules`.
    link_preview_agents: tuple[str, ...] = Field(
        default=DEFAULT_PREVIEW_AGENTS,
        description="User-Agent substrings (case-insensitive) of link preview fetchers: redirected, never a click")
    link_resume_max_age_seconds: int = Field(
        default=RESUME_MAX_AGE_SECONDS, ge=1,
        description="Seconds a resume token is valid after it was signed (R-T6.5: 24 h); older → 410")
    link_retry_after_seconds: int = Field(
        default=30, ge=1, description="Retry-After (seconds) of the 503 page when the database or broker fails")
    link_publish_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Seconds a click waits for the broker to take its link.clicked before 503")

    @property
    def link_rules(self) -> LinkRules:
        """The domain's rules for answering short links, from these settings."""
        return LinkRules(preview_agents=self.link_preview_agents,
                         resume_max_age_seconds=self.link_resume_max_age_seconds,
                         retry_after_seconds=self.link_retry_after_seconds)

    @field_validator("admin_token", mode="after")
    @classmethod
    def _stripped_token(cls, value: str) -> str:
        # Compared byte for byte with what the operator presents: a token read from a file (a Kubernetes
        # secret) ends with a newline nobody types.
        return value.strip()

    @field_validator("bootstrap_api_key", mode="after")
    @classmethod
    def _stripped_key(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_prod(self) -> Settings:
        if self.env == "prod" and self.whatsapp_app_secret in _PLACEHOLDERS:
            raise ValueError("SCRM_WHATSAPP_APP_SECRET must be set to the Meta app secret in prod")
        if self.env == "prod" and self.admin_token in PLACEHOLDER_SECRETS:
            raise ValueError("SCRM_ADMIN_TOKEN must be set to a random value (the operator's token) in prod")
        if not self.admin_token:
            raise ValueError("SCRM_ADMIN_TOKEN must not be empty")
        if (problem := tenant_id_problem(self.bootstrap_tenant)) is not None:
            raise ValueError(f"SCRM_BOOTSTRAP_TENANT {self.bootstrap_tenant!r} {problem}")
        return self
