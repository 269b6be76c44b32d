"""The bounded TTL cache behind API-key lookups."""

from __future__ import annotations

from scrm_common.cache import MISSING, TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str, int | None] = TtlCache(ttl=10, maxsize=5, clock=clock)
    cache.put("a", None)  # a negative answer is cached too
    assert cache.get("a", MISSING) is None
    clock.now = 10.5
    assert cache.get("a", MISSING) is MISSING


def test_random_keys_cannot_grow_it_beyond_maxsize_and_recent_use_survives() -> None:
    cache: TtlCache[str, int] = TtlCache(ttl=60, maxsize=100, clock=Clock())
    cache.put("hot", 1)
    for i in range(10_000):
        cache.put(f"random-{i}", i)
        if i % 50 == 0:
            assert cache.get("hot") == 1
    assert len(cache) == 100
    assert cache.get("hot") == 1
