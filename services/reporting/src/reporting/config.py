"""Settings of reporting: the shared ones plus its port and its policy."""

from __future__ import annotations

from pydantic import Field

from reporting.domain.policy import ReportPolicy
from scrm_common.settings import CommonSettings


class Settings(CommonSettings):
    """`SCRM_REPORTING_PORT`, `SCRM_REPORT_POLICY` (JSON of ReportPolicy fields)."""

    reporting_port: int = Field(default=8084, ge=1, le=65535)
    report_policy: ReportPolicy = ReportPolicy()
