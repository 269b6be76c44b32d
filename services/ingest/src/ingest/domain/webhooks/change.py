"""One `entry[].changes[]` item as the field parsers see it, and a safe walk over its arrays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from .model import MALFORMED, Findings


@dataclass(frozen=True, slots=True)
class Change:
    """A webhook change: its `field`, its `value` object, the WABA id (`entry.id`) and `entry.time`."""

    field: str
    value: dict[str, Any]
    waba_id: str | None
    entry_time: Any


FieldParser = Callable[[Change, Findings], None]


def each_item(change: Change, out: Findings, key: str, kind: str,
              handle: Callable[[dict[str, Any]], None]) -> None:
    """`handle` each object of `value[key]`; a non-array, or an item not an object, is skipped as malformed.

    An exception while one item is handled undoes that item's findings and skips it as malformed,
    then the next item is handled: a signed payload of an unexpected shape keeps its good items
    (a 5xx would make Meta retry the whole delivery for days).
    """
    raw = change.value.get(key)
    if raw is None:
        return
    if not isinstance(raw, list):
        out.skip(change.field, kind, MALFORMED, detail=f"{key} is not an array")
        return
    for item in raw:
        if not isinstance(item, dict):
            out.skip(change.field, kind, MALFORMED, detail=f"{key}[] item is not an object")
            continue
        guarded(out, change.field, kind, partial(handle, item))


def guarded(out: Findings, field: str, kind: str, work: Callable[[], None]) -> None:
    """Run `work`; if it raises, undo what it found and skip it as malformed instead."""
    events, skipped, repaired = len(out.events), len(out.skipped), len(out.repaired)
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - one bad item must not cost the others
        del out.events[events:], out.skipped[skipped:], out.repaired[repaired:]
        out.skip(field, kind, MALFORMED, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
