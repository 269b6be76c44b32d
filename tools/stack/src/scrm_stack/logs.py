"""Size-capped logs under `<root>/logs`: copy-truncate rotation the runner applies while children write.

Children write with O_APPEND, so after the runner copies `x.log` to `x.log.1` and truncates `x.log` to zero,
their next write lands at the new end (no hole, no reopen needed). Lines written between the copy and the
truncate are lost from the rotated file — the usual price of copy-truncate, a few lines at most.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_MAX_BYTES = "SCRM_LOG_MAX_BYTES"  # rotate a log once it is larger than this
ENV_KEEP = "SCRM_LOG_KEEP"  # rotated files kept per log (x.log.1 … x.log.N)


@dataclass(frozen=True, slots=True)
class LogRotation:
    """Rotate any `*.log` in a folder once it exceeds `max_bytes`, keeping `keep` older files."""

    max_bytes: int = 10 * 1024 * 1024
    keep: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LogRotation:
        """From `SCRM_LOG_MAX_BYTES` / `SCRM_LOG_KEEP`; ValueError naming the variable when malformed."""
        d = cls()
        values = {}
        for var, default, minimum in ((ENV_MAX_BYTES, d.max_bytes, 1024), (ENV_KEEP, d.keep, 1)):
            raw = env.get(var, "").strip()
            try:
                value = int(raw) if raw else default
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a whole number") from None
            if value < minimum:
                raise ValueError(f"{var}={raw!r} must be at least {minimum}")
            values[var] = value
        return cls(max_bytes=values[ENV_MAX_BYTES], keep=values[ENV_KEEP])

    def rotate_folder(self, folder: Path) -> list[Path]:
        """Rotate every log in `folder` over the cap; return the logs rotated."""
        rotated = []
        for path in sorted(folder.glob("*.log")):
            try:
                if path.stat().st_size > self.max_bytes:
                    self.rotate(path)
                    rotated.append(path)
            except OSError:
                continue  # vanished or unreadable: try again at the next pass
        return rotated

    def rotate(self, path: Path) -> None:
        """x.log.(N-1) → x.log.N …, x.log copied to x.log.1, then x.log truncated in place."""
        for n in range(self.keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                os.replace(older, path.with_name(f"{path.name}.{n + 1}"))
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
        with open(path, "r+b") as handle:
            handle.truncate(0)
