"""Rate limits as clock-injected token buckets: number throughput (130429) and pair rate (131056)."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from whatsapp_sim.domain.errors import MetaError, meta_error

Now = Callable[[], float]


class TokenBuckets:
    """Token buckets keyed by anything: `capacity` tokens refilled at `rate`/s; full ones are pruned."""

    def __init__(self, rate: float, capacity: float, now: Now, *, prune_every: int = 50_000) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self.rate = rate
        self.capacity = capacity
        self._now = now
        self._state: dict[Hashable, tuple[float, float]] = {}
        self._prune_every = prune_every
        self._ops = 0

    def _level(self, key: Hashable, at: float) -> float:
        state = self._state.get(key)
        if state is None:
            return self.capacity
        tokens, last = state
        return min(self.capacity, tokens + max(0.0, at - last) * self.rate)

    def try_take(self, key: Hashable, tokens: float = 1.0) -> bool:
        """Take `tokens` from the key's bucket if it holds them; False (and take nothing) otherwise."""
        at = self._now()
        level = self._level(key, at)
        self._ops += 1
        if self._ops >= self._prune_every:
            self.prune()
        if level + 1e-9 < tokens:
            self._state[key] = (level, at)
            return False
        self._state[key] = (level - tokens, at)
        return True

    def available(self, key: Hashable) -> float:
        """Tokens the key's bucket holds now."""
        return self._level(key, self._now())

    def prune(self) -> None:
        """Forget buckets that are full again."""
        at = self._now()
        self._ops = 0
        full = [k for k in self._state if self._level(k, at) >= self.capacity]
        for key in full:
            del self._state[key]

    def clear(self) -> None:
        """Forget every bucket."""
        self._state.clear()

    def __len__(self) -> int:
        return len(self._state)


class ThroughputLimiter:
    """Messages per second per business phone number; over it → 400 / 130429."""

    def __init__(self, mps: float, now: Now) -> None:
        self._buckets = TokenBuckets(rate=mps, capacity=max(1.0, mps), now=now)

    def check(self, phone_number_id: str) -> MetaError | None:
        """None when the send may go, else the 130429 error."""
        if self._buckets.try_take(phone_number_id):
            return None
        return meta_error(130429)

    def clear(self) -> None:
        """Reset every number's budget."""
        self._buckets.clear()


class PairLimiter:
    """Messages from one number to one user: about one per `interval_s`, bursts up to `burst` → 131056."""

    def __init__(self, interval_s: float, burst: int, now: Now) -> None:
        self._buckets = TokenBuckets(rate=1.0 / interval_s, capacity=float(burst), now=now)

    def check(self, phone_number_id: str, wa_id: str) -> MetaError | None:
        """None when the send may go, else the 131056 error."""
        if self._buckets.try_take((phone_number_id, wa_id)):
            return None
        return meta_error(131056)

    def clear(self) -> None:
        """Reset every pair's budget."""
        self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)
