"""The result document: machine, aiokafka's C extension, the figures; one JSON file per day."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

FIGURES = ("floor", "trigger_engine", "pipeline", "carts")
SCHEMA_VERSION = 1


def machine_info() -> dict[str, Any]:
    """CPU count, Python version, platform; CPU model and memory when /proc tells."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return info


def kafka_info() -> dict[str, Any]:
    """aiokafka's version and whether its C extension is in use (NO_EXTENSIONS False means loaded)."""
    try:
        import aiokafka
        from aiokafka.util import NO_EXTENSIONS
    except ImportError as exc:  # pragma: no cover - aiokafka is a dependency
        return {"error": str(exc)}
    try:
        import aiokafka.record._crecords  # noqa: F401

        crecords = True
    except ImportError:
        crecords = False
    from aiokafka.record import default_records

    return {
        "aiokafka": aiokafka.__version__,
        "NO_EXTENSIONS": bool(NO_EXTENSIONS),
        "c_extension_loaded": (not NO_EXTENSIONS) and crecords,
        "crecords_importable": crecords,
        "record_batch_impl": default_records.DefaultRecordBatch.__module__,
    }


def new_document(today: date, *, argv: list[str] | None = None) -> dict[str, Any]:
    """An empty result document for `today`."""
    return {
        "schema": SCHEMA_VERSION,
        "date": today.isoformat(),
        "machine": machine_info(),
        "kafka_client": kafka_info(),
        "argv": list(argv if argv is not None else sys.argv[1:]),
        "figures": {},
    }


def figure(name: str, data: dict[str, Any], *, target: str, met: bool | None) -> dict[str, Any]:
    """One figure: what was measured, the target it is held against and whether it was met."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}")
    return {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "target": target,
            "target_met": met, **data}


def merge(existing: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The day's document after a run: machine and argv from the run, its figures replace earlier ones."""
    if not existing or existing.get("schema") != SCHEMA_VERSION or existing.get("date") != new["date"]:
        return new
    merged = dict(new)
    merged["figures"] = {**existing.get("figures", {}), **new["figures"]}
    return merged


def results_dir(start: Path | None = None) -> Path:
    """`bench/results` of the repository around `start` (the working directory by default)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "bench" / "results").is_dir():
            return candidate / "bench" / "results"
    return here / "bench" / "results"


def write(document: dict[str, Any], directory: Path) -> Path:
    """Write (merging with an earlier run of the same day) `<directory>/<date>.json`; return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{document['date']}.json"
    existing = None
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except (OSError, ValueError):
            existing = None
    merged = merge(existing, document)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path
