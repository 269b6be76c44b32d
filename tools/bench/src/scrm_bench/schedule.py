"""Open-loop arrival schedule: fixed wall-clock slots, independent of how fast anything answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Slot:
    """Send events `first` … `first + size - 1` at `at` seconds after the start."""

    index: int
    at: float
    first: int
    size: int


def total_events(rate: float, duration: float) -> int:
    """How many events an arrival rate yields over a duration."""
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    return int(round(rate * duration))


def slots(rate: float, duration: float, batch: int) -> list[Slot]:
    """Slots of `batch` events, slot k at k·batch/rate seconds (the last one may be smaller).

    Event i is therefore due at i/rate rounded down to its batch's slot: the arrival rate holds whatever the
    batch size, and an event's reference time is its slot's, not the moment a request happened to go out.
    """
    if batch < 1:
        raise ValueError("batch must be at least 1")
    total = total_events(rate, duration)
    out = []
    for index, first in enumerate(range(0, total, batch)):
        out.append(Slot(index=index, at=first / rate, first=first, size=min(batch, total - first)))
    return out


def scheduled_time(start: float, slot: Slot) -> float:
    """The wall-clock time a slot is due."""
    return start + slot.at


def per_second(times: list[float], start: float, seconds: int) -> list[int]:
    """How many of `times` fall into each whole second after `start` (for a sustained-throughput view)."""
    counts = [0] * max(0, seconds)
    for t in times:
        k = int(t - start)
        if 0 <= k < seconds:
            counts[k] += 1
    return counts
