"""Loading the webhook corpus and matching what ingest produced against its expectations (see README.md)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PHONE_NUMBER_ID = "100000000000001"
WABA_ID = "200000000000001"
TENANT = "demo"
RECEIVED = "<received>"


@dataclass(frozen=True)
class Case:
    name: str
    raw: bytes
    expect: dict[str, Any]

    @property
    def payload(self) -> Any:
        return json.loads(self.raw)


def cases() -> list[Case]:
    """Every row of the corpus, by name."""
    rows = []
    for path in sorted(HERE.glob("*.payload.json")):
        name = path.name.removesuffix(".payload.json")
        expect = json.loads((HERE / f"{name}.expect.json").read_text(encoding="utf-8"))
        rows.append(Case(name, path.read_bytes(), expect))
    return rows


Received = datetime | tuple[datetime, datetime] | None


def matches(pattern: Any, actual: Any, *, received: Received = None) -> bool:
    """True when `actual` has every key of `pattern` with a matching value (`null`: absent or null).

    `received` is the time the webhook was received, or the (earliest, latest) it can have been.
    """
    if pattern is None:
        return actual is None
    if pattern == RECEIVED:
        if received is None or not isinstance(actual, str):
            return False
        earliest, latest = received if isinstance(received, tuple) else (received, received)
        return earliest <= datetime.fromisoformat(actual) <= latest
    if isinstance(pattern, dict):
        if not isinstance(actual, dict):
            return False
        return all(matches(value, actual.get(key), received=received) for key, value in pattern.items())
    if isinstance(pattern, list):
        return (isinstance(actual, list) and len(pattern) == len(actual)
                and all(matches(p, a, received=received) for p, a in zip(pattern, actual, strict=True)))
    return bool(pattern == actual and type(pattern) is type(actual))


def unmatched(expected: list[dict[str, Any]], produced: list[dict[str, Any]], *,
              received: Received = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The expected patterns no produced event matched, and the produced events no pattern claimed.

    Each produced event satisfies at most one pattern; patterns are tried most specific first.
    """
    left = list(produced)
    missing = []
    for pattern in sorted(expected, key=lambda p: -len(json.dumps(p))):
        hit = next((i for i, event in enumerate(left) if matches(pattern, event, received=received)), None)
        if hit is None:
            missing.append(pattern)
        else:
            left.pop(hit)
    return missing, left


def labels(items: Iterable[Any]) -> Counter[tuple[str, str, str]]:
    """(field, type, reason) counts of skipped/repaired items (dicts or objects with those attributes)."""
    out: Counter[tuple[str, str, str]] = Counter()
    for item in items:
        get = item.get if isinstance(item, dict) else lambda k, item=item: getattr(item, k)
        out[(get("field"), get("type"), get("reason"))] += 1
    return out


def walk(payload: Any) -> Iterable[tuple[str, dict[str, Any]]]:
    """(field, value) of every well-formed change in a payload, for coverage checks."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        return
    for entry in payload["entry"]:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            if isinstance(change, dict) and isinstance(change.get("value"), dict):
                yield change.get("field"), change["value"]
