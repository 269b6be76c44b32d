"""Latency and histogram math: nearest-rank percentiles and Prometheus histogram quantiles."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (HDR-style "value at percentile"): at least q % of values are ≤ the result."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError("q must be within [0, 100]")
    rank = max(1, math.ceil(round(q / 100.0 * len(sorted_values), 9)))  # 99.9 % of 1000 is 999, not 999.0…01
    return float(sorted_values[rank - 1])


def summarize(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, min, mean, p50, p90, p99, p99.9 and max of `values` (None when there are none)."""
    data = sorted(values)
    if not data:
        return {"count": 0, "min": None, "mean": None, **{k: None for k, _ in PERCENTILES}, "max": None}
    out: dict[str, float | int | None] = {"count": len(data), "min": data[0], "mean": sum(data) / len(data)}
    for name, q in PERCENTILES:
        out[name] = percentile(data, q)
    out["max"] = data[-1]
    return out


_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
_LE = re.compile(r'le="([^"]+)"')


def histogram_buckets(metrics_text: str, name: str, *, labels: str = "") -> dict[float, float]:
    """Cumulative bucket counts (`le` → count) of histogram `name`, summed over its other labels.

    With `labels` (e.g. `topic="scrm.events.v1"`), only samples whose labels contain that text count.
    """
    buckets: dict[float, float] = {}
    for line in metrics_text.splitlines():
        m = _SAMPLE.match(line.strip())
        if not m or m.group("name") != f"{name}_bucket" or labels not in (m.group("labels") or ""):
            continue
        le = _LE.search(m.group("labels") or "")
        if not le:
            continue
        bound = math.inf if le.group(1) == "+Inf" else float(le.group(1))
        buckets[bound] = buckets.get(bound, 0.0) + float(m.group("value"))
    return dict(sorted(buckets.items()))


def gauges(metrics_text: str, suffix: str) -> dict[str, float]:
    """Every sample whose metric name ends with `suffix`, keyed `name{labels}`."""
    out: dict[str, float] = {}
    for line in metrics_text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m and m.group("name").endswith(suffix):
            try:
                out[f"{m.group('name')}{{{m.group('labels') or ''}}}"] = float(m.group("value"))
            except ValueError:
                continue
    return out


def counter_value(metrics_text: str, name: str) -> float:
    """The sum of every sample of `name` (a counter's labels folded)."""
    total = 0.0
    for line in metrics_text.splitlines():
        m = _SAMPLE.match(line.strip())
        if m and m.group("name") == name:
            try:
                total += float(m.group("value"))
            except ValueError:
                continue
    return total


def bucket_delta(before: dict[float, float], after: dict[float, float]) -> dict[float, float]:
    """What a histogram observed between two scrapes."""
    return {le: after[le] - before.get(le, 0.0) for le in after}


def histogram_quantile(buckets: dict[float, float], q: float) -> float | None:
    """Prometheus' `histogram_quantile`: linear interpolation inside the bucket holding quantile `q` (0–1)."""
    if not buckets:
        return None
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # beyond the last finite bucket: its bound is all we know
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def histogram_summary(buckets: dict[float, float]) -> dict[str, float | None]:
    """count and p50/p90/p99/p99.9 estimated from cumulative buckets."""
    total = buckets[max(buckets)] if buckets else 0.0
    out: dict[str, float | None] = {"count": total}
    for name, q in PERCENTILES:
        out[name] = histogram_quantile(buckets, q / 100.0)
    return out
