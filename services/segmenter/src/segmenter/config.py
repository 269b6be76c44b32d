"""Settings of the segmenter: the shared ones plus its port, its policy and the tier refresh cadence."""

from __future__ import annotations

from pydantic import Field

from scrm_common.settings import CommonSettings
from segmenter.domain.policy import SegmentPolicy


class Settings(CommonSettings):
    """`SCRM_SEGMENTER_PORT`, `SCRM_SEGMENT_POLICY` (JSON of SegmentPolicy fields), refresh cadence."""

    segmenter_port: int = Field(default=8083, ge=1, le=65535)
    segment_policy: SegmentPolicy = SegmentPolicy()
    segmenter_refresh_interval_seconds: float = Field(default=30.0, gt=0)
    segmenter_refresh_batch: int = Field(default=500, ge=1)
