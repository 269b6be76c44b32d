"""A small bounded TTL cache: lookups that anyone can trigger (API keys) must not grow memory unboundedly."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISSING = object()


class TtlCache(Generic[K, V]):
    """Entries live `ttl` seconds; beyond `maxsize` the least recently used go first."""

    def __init__(self, *, ttl: float, maxsize: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._maxsize = maxsize
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, default: object = _MISSING) -> V | object:
        """The cached value, or `default` when absent or expired."""
        hit = self._entries.get(key)
        if hit is None or hit[0] < self._clock():
            self._entries.pop(key, None)
            return default
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock() + self._ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._maxsize:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        """Forget `key` (no error when absent)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


MISSING = _MISSING
