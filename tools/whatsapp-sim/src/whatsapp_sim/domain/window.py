"""The 24-hour customer-service window per (business number, user), opened by inbound messages."""

from __future__ import annotations

from collections.abc import Callable

from whatsapp_sim.domain.errors import MetaError, meta_error

DAY_S = 86_400.0


class ServiceWindows:
    """Last inbound time per (phone_number_id, wa_id); free-form sends need one within `duration_s`."""

    def __init__(self, now: Callable[[], float], duration_s: float = DAY_S, *, prune_every: int = 50_000) -> None:
        self._now = now
        self.duration_s = duration_s
        self._last_inbound: dict[tuple[str, str], float] = {}
        self._prune_every = prune_every
        self._ops = 0

    def touch(self, phone_number_id: str, wa_id: str, at: float | None = None) -> float:
        """Record an inbound message (now, or at `at`); return when the window closes."""
        when = self._now() if at is None else at
        key = (phone_number_id, wa_id)
        self._last_inbound[key] = max(when, self._last_inbound.get(key, when))
        self._ops += 1
        if self._ops >= self._prune_every:
            self.prune()
        return self._last_inbound[key] + self.duration_s

    def closes_at(self, phone_number_id: str, wa_id: str) -> float | None:
        """When the window closes, or None if it is not open."""
        last = self._last_inbound.get((phone_number_id, wa_id))
        if last is None or self._now() >= last + self.duration_s:
            return None
        return last + self.duration_s

    def is_open(self, phone_number_id: str, wa_id: str) -> bool:
        """True while a free-form message may be sent to the user."""
        return self.closes_at(phone_number_id, wa_id) is not None

    def check(self, phone_number_id: str, wa_id: str) -> MetaError | None:
        """None inside the window, else the 131047 re-engagement error."""
        return None if self.is_open(phone_number_id, wa_id) else meta_error(131047)

    def prune(self) -> None:
        """Forget closed windows."""
        self._ops = 0
        cutoff = self._now() - self.duration_s
        for key in [k for k, last in self._last_inbound.items() if last <= cutoff]:
            del self._last_inbound[key]

    def clear(self) -> None:
        """Close every window."""
        self._last_inbound.clear()

    def __len__(self) -> int:
        return len(self._last_inbound)
