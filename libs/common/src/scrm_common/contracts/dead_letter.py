"""Reading a dead letter's `dead_letter` header, which the consume loop writes (scrm_common.kafka.consumer).

The header is JSON: `topic`, `partition`, `offset`, `error`, `tries`, and since this release `service` (the
consumer group), `failure` ("deterministic" | "exhausted"), `at` (ISO-8601 UTC), `id` (a stable name of the
dead letter) and, for a record too large to keep whole, `truncated`, `value_size`, `value_sha256`. Readers
tolerate any key being absent (older records).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

HEADER = "dead_letter"

Header = tuple[str, bytes | None]


def read_meta(headers: Sequence[Header]) -> dict[str, Any]:
    """The JSON object of the last `dead_letter` header (the outermost failure); {} when absent or unreadable."""
    for name, raw in reversed(headers):
        if name == HEADER:
            try:
                meta = json.loads(raw or b"")
            except (ValueError, UnicodeDecodeError, RecursionError):
                return {}
            return meta if isinstance(meta, dict) else {}
    return {}


def meta_time(value: Any, default: datetime) -> datetime:
    """An ISO-8601 time of the header (`at`) as an aware datetime (naive read as UTC); `default` when unreadable."""
    if isinstance(value, str):
        try:
            at = datetime.fromisoformat(value)
        except ValueError:
            return default
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return default
