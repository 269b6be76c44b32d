"""Simulator settings, read from `SCRM_*` environment variables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from whatsapp_sim.domain.wa_ids import WaIdRules


@dataclass(frozen=True, slots=True)
class Account:
    """A simulated business phone number, the token that may send from it (and list its WABA's templates),
    its display number and the WhatsApp Business Account it belongs to."""

    phone_number_id: str
    token: str
    display_phone_number: str
    waba_id: str = "200000000000001"


# The numbers served when SCRM_SIMULATOR_ACCOUNTS is empty, after the bootstrap one (which keeps
# SCRM_BOOTSTRAP_PHONE_NUMBER_ID / SCRM_BOOTSTRAP_ACCESS_TOKEN, SCRM_SIMULATOR_DISPLAY_PHONE_NUMBER and
# SCRM_SIMULATOR_WABA_ID): each its own WABA, so two tenants can each have a number of their own.
EXTRA_DEFAULT_ACCOUNTS = (
    Account("100000000000002", "sim-token-2", "15550002222", "200000000000002"),
    Account("100000000000003", "sim-token-3", "15550003333", "200000000000003"),
)


class SimulatorSettings(BaseSettings):
    """Everything the simulator can be tuned with; defaults suit local development."""

    model_config = SettingsConfigDict(env_prefix="SCRM_", extra="ignore", frozen=True)

    log_level: str = "INFO"
    simulator_host: str | None = None  # None: SCRM_BIND_HOST, else 127.0.0.1
    simulator_port: int = Field(default=8089, ge=1, le=65535)
    whatsapp_app_secret: str = Field(default="dev-secret", min_length=1)
    simulator_webhook_url: str = "http://127.0.0.1:8080/v1/webhooks/whatsapp"
    bootstrap_phone_number_id: str = "100000000000001"
    bootstrap_access_token: str = "sim-token"
    # "phone_number_id:token[:display_phone_number[:waba_id]],..."; empty means three numbers: the bootstrap
    # one (WABA SCRM_SIMULATOR_WABA_ID) and EXTRA_DEFAULT_ACCOUNTS.
    simulator_accounts: str = ""
    # Path to a JSON template catalog; empty means the sender's packaged default catalog.
    simulator_templates: str = ""
    simulator_mps: float = Field(default=80.0, gt=0)
    simulator_pair_interval_s: float = Field(default=6.0, gt=0)
    simulator_pair_burst: int = Field(default=45, ge=1)
    simulator_p_delivered: float = Field(default=0.97, ge=0, le=1)
    simulator_p_read: float = Field(default=0.6, ge=0, le=1)
    simulator_p_fail: float = Field(default=0.02, ge=0, le=1)
    simulator_p_reply: float = Field(default=0.05, ge=0, le=1)
    # Synchronous 5xx faults (131000 / 131016 / 2) injected into otherwise valid sends.
    simulator_p_server_error: float = Field(default=0.0, ge=0, le=1)
    # Delay between successive status webhooks, "min..max" milliseconds (or "min,max", or one number).
    simulator_status_delay_ms: Annotated[tuple[int, int], NoDecode] = (50, 300)
    simulator_window_mode: Literal["sync", "async"] = "sync"
    simulator_window_hours: float = Field(default=24.0, gt=0)
    simulator_seed: int | None = None
    simulator_display_phone_number: str = "15550001111"
    simulator_waba_id: str = "200000000000001"
    simulator_message_cap: int = Field(default=200_000, ge=1)
    # The first N `message_templates` listings answer 80007 (WABA rate limit), to try a client's backoff.
    simulator_rate_limit_templates: int = Field(default=0, ge=0)
    # `message_templates` page size when the request gives no `limit` (Meta's Graph default), and its cap.
    simulator_templates_page_size: int = Field(default=25, ge=1, le=1000)
    simulator_rejection_cap: int = Field(default=10_000, ge=1)
    simulator_webhook_max_tries: int = Field(default=10, ge=1)
    simulator_webhook_retry_base_s: float = Field(default=0.5, gt=0)
    simulator_webhook_retry_max_s: float = Field(default=30.0, gt=0)
    simulator_webhook_timeout_s: float = Field(default=5.0, gt=0)
    simulator_webhook_concurrency: int = Field(default=8, ge=1)
    simulator_webhook_batch: int = Field(default=100, ge=1, le=1000)
    simulator_webhook_linger_ms: float = Field(default=20.0, ge=0, le=1000)
    # Brazilian mobiles whose WhatsApp id keeps the old 8-digit form (CLOUD-API.md §1): empty for none,
    # "*" for every one, or a comma-separated list of numbers (+55 DD 9XXXX-XXXX).
    simulator_br_legacy_numbers: str = ""
    # Issue 9: the share of accepted messages with a short link (`…/l/<code>`, `…/r/<token>`) whose customer
    # clicks one, after a delay of "min..max" seconds; 0 never clicks (the default, so tests are undisturbed).
    simulator_click_rate: float = Field(default=0.0, ge=0, le=1, description="Share of messages with a link "
                                        "whose customer clicks it (0..1); 0 = never")
    simulator_click_delay_s: Annotated[tuple[float, float], NoDecode] = Field(
        default=(2.0, 20.0), description="Random delay before a click, min..max seconds")
    simulator_click_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one click's GET, seconds")
    # Where links are written (SCRM_PUBLIC_BASE_URL) and where ingest answers (SCRM_INGEST_URL): a click on a
    # link under the public base goes to ingest when the two differ (the public name may not resolve here).
    public_base_url: str = Field(default="", description="Base URL short links are written with")
    ingest_url: str = Field(default="http://127.0.0.1:8080", description="Ingest's URL, where clicks go")

    @field_validator("simulator_status_delay_ms", mode="before")
    @classmethod
    def _parse_delay(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p for p in re.split(r"\s*(?:\.\.|,|-)\s*", value.strip().strip("[]()")) if p]
            if len(parts) == 1:
                parts = parts * 2
            if len(parts) != 2:
                raise ValueError("expected 'min..max' milliseconds")
            return (int(parts[0]), int(parts[1]))
        if isinstance(value, int | float):
            return (int(value), int(value))
        return value

    @field_validator("simulator_click_delay_s", mode="before")
    @classmethod
    def _parse_click_delay(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = [p for p in re.split(r"\s*(?:\.\.|,)\s*", value.strip().strip("[]()")) if p]
            if len(parts) == 1:
                parts = parts * 2
            if len(parts) != 2:
                raise ValueError("expected 'min..max' seconds")
            return (float(parts[0]), float(parts[1]))
        if isinstance(value, int | float):
            return (float(value), float(value))
        return value

    @model_validator(mode="after")
    def _check(self) -> SimulatorSettings:
        low, high = self.simulator_status_delay_ms
        if low < 0 or high < low:
            raise ValueError("simulator_status_delay_ms must be 0 <= min <= max")
        low_s, high_s = self.simulator_click_delay_s
        if low_s < 0 or high_s < low_s:
            raise ValueError("simulator_click_delay_s must be 0 <= min <= max")
        self.accounts()  # fail at start-up on a malformed account list
        self.wa_id_rules()
        return self

    def wa_id_rules(self) -> WaIdRules:
        """How recipients' numbers become the WhatsApp ids the simulator answers with."""
        return WaIdRules.parse(self.simulator_br_legacy_numbers)

    def accounts(self) -> dict[str, Account]:
        """The simulated phone numbers, keyed by phone_number_id (the first is the default one)."""
        spec = self.simulator_accounts.strip()
        if not spec:
            first = Account(self.bootstrap_phone_number_id, self.bootstrap_access_token,
                            self.simulator_display_phone_number, self.simulator_waba_id)
            return {a.phone_number_id: a for a in (first, *EXTRA_DEFAULT_ACCOUNTS)
                    if a is first or a.phone_number_id != first.phone_number_id}
        out: dict[str, Account] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            fields = [f.strip() for f in item.split(":")]
            if len(fields) not in (2, 3, 4) or not all(fields):
                raise ValueError(f"bad simulator account {item!r}: want phone_number_id:token[:display[:waba_id]]")
            pnid, token = fields[0], fields[1]
            display = fields[2] if len(fields) >= 3 else self.simulator_display_phone_number
            waba = fields[3] if len(fields) == 4 else self.simulator_waba_id
            out[pnid] = Account(phone_number_id=pnid, token=token, display_phone_number=display, waba_id=waba)
        if not out:
            raise ValueError("at least one simulator account is required")
        return out

    def templates_source(self) -> Traversable:
        """Where the template catalog is read from."""
        if self.simulator_templates.strip():
            return Path(self.simulator_templates.strip())
        return files("sender") / "catalog" / "default_templates.json"
